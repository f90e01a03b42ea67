"""What one training step pays to record its loss: torchmetrics MeanMetric, a tensor slot, a list.

    python benchmarks/step_cost.py

mnist_mlp.model keeps each step's loss tensor in a list (its batch size in another); this times
that beside MeanMetric.update, the usual torchmetrics way, and beside writing the loss into a
slot of a preallocated tensor, on the same loss values. Prints medians in us.
"""

from __future__ import annotations

import statistics
import time

import torch
from torchmetrics import MeanMetric

STEPS, REPEATS, BATCH = 2000, 7, 32


def per_step_us(record) -> float:
    losses = torch.rand(STEPS)
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for step in range(STEPS):
            record(step, losses[step])
        timings.append((time.perf_counter() - start) / STEPS * 1e6)
    return statistics.median(timings)


def main() -> None:
    metric = MeanMetric()
    slots = torch.zeros(STEPS)
    meanmetric = per_step_us(lambda step, loss: metric.update(loss, BATCH))
    slot = per_step_us(lambda step, loss: torch.mul(loss, BATCH, out=slots[step]))
    kept, sizes = [], []
    listed = per_step_us(lambda step, loss: (kept.append(loss.detach()), sizes.append(BATCH)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {REPEATS}")
    print(f"MeanMetric.update(loss, weight): {meanmetric:8.1f} us per step")
    print(f"torch.mul(loss, n, out=slot):    {slot:8.1f} us per step")
    print(f"list.append(loss.detach()):      {listed:8.1f} us per step (what the model does)")


if __name__ == "__main__":
    main()
