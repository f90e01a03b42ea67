"""What one training step pays to keep what its loss and accuracy are computed from later.

    python benchmarks/step_cost.py

mnist_mlp.model keeps each SGD step's logits and labels in lists and reads them every
model.check_finite_every steps (each example's cost, its argmax) in a few operations. This times
that, per step and including the read, beside the usual ways of recording the step's loss and
correct count as it comes: torchmetrics' MeanMetric and MulticlassAccuracy updates, and the loss
and the argmax taken per step and kept in lists. Prints medians in us.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

STEPS, REPEATS, BATCH, CLASSES, EVERY = 2000, 7, 32, 10, 50


def per_step_us(record, read) -> float:
    logits = torch.randn(STEPS, BATCH, CLASSES)
    labels = torch.randint(CLASSES, (STEPS, BATCH))
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for step in range(STEPS):
            record(logits[step], labels[step])
            if (step + 1) % EVERY == 0:
                read()
        timings.append((time.perf_counter() - start) / STEPS * 1e6)
    return statistics.median(timings)


def main() -> None:
    mean_loss, accuracy = MeanMetric(), MulticlassAccuracy(CLASSES, average="micro")

    def metrics(logits, labels):
        mean_loss.update(F.cross_entropy(logits, labels), BATCH)
        accuracy.update(logits.argmax(1), labels)

    losses, correct = [], []

    def per_step(logits, labels):
        losses.append(F.cross_entropy(logits, labels).detach())
        correct.append((logits.argmax(1) == labels).sum())

    def read_per_step():
        torch.isfinite(torch.stack(losses)).all()
        losses.clear(), correct.clear()

    kept_logits, kept_labels = [], []

    def keep(logits, labels):
        kept_logits.append(logits.detach())
        kept_labels.append(labels)

    def read_kept():
        logits, labels = torch.cat(kept_logits), torch.cat(kept_labels)
        torch.isfinite(F.cross_entropy(logits, labels, reduction="none")).all()
        (logits.argmax(1) == labels).sum()
        kept_logits.clear(), kept_labels.clear()

    timed = {
        "torchmetrics updates per step": per_step_us(metrics, lambda: None),
        "loss and argmax per step, in lists": per_step_us(per_step, read_per_step),
        "logits and labels kept, read every 50 (the model)": per_step_us(keep, read_kept),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {REPEATS}")
    for name, us in timed.items():
        print(f"{name + ':':52s} {us:8.1f} us per step")


if __name__ == "__main__":
    main()
