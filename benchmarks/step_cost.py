"""What one training step pays to keep what its loss and accuracy are computed from later.

    python benchmarks/step_cost.py

mnist_mlp.training.model keeps each SGD step's logits and labels in a list and reads them at the
end of each interval of log_every steps (each example's cost, its predicted class) in a few
operations.
This times that, per step and including the read, beside the usual ways of recording the step's
loss and correct count as it comes: torchmetrics' MeanMetric and MulticlassAccuracy updates, and
the loss and the argmax taken per step and kept in lists; and the model's read beside the same
read through F.cross_entropy(reduction="none") and argmax. Prints medians in us, at batch sizes
32 and 256.
"""

from __future__ import annotations

import functools
import statistics
import time

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_mlp.training.costs import cross_entropies

STEPS, REPEATS, CLASSES, EVERY = 1000, 7, 10, 50
BATCH_SIZES = (32, 256)


def per_step_us(batch_size: int, record, read) -> float:
    logits = torch.randn(STEPS, batch_size, CLASSES)
    labels = torch.randint(CLASSES, (STEPS, batch_size))
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
        mean_loss.update(F.cross_entropy(logits, labels), len(labels))
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

    def read_kept(example_losses, predicted_classes):
        logits, labels = torch.cat(kept_logits), torch.cat(kept_labels)
        torch.isfinite(example_losses(logits, labels)).all()
        (predicted_classes(logits) == labels).sum()
        kept_logits.clear(), kept_labels.clear()

    def read_as_the_model() -> None:
        read_kept(cross_entropies, lambda logits: logits.max(1).indices)

    def read_with_torch_functions() -> None:
        losses = functools.partial(F.cross_entropy, reduction="none")
        read_kept(losses, lambda logits: logits.argmax(1))

    ways = {
        "torchmetrics updates per step": (metrics, lambda: None),
        "loss and argmax per step, in lists": (per_step, read_per_step),
        "logits and labels kept, read every 50 (the model)": (keep, read_as_the_model),
        "the same, read by F.cross_entropy and argmax": (keep, read_with_torch_functions),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {REPEATS}")
    print(f"{'us per step, at batch size:':52s} " + " ".join(f"{b:>8d}" for b in BATCH_SIZES))
    for name, (record, read) in ways.items():
        timed = [per_step_us(batch_size, record, read) for batch_size in BATCH_SIZES]
        print(f"{name + ':':52s} " + " ".join(f"{us:8.1f}" for us in timed))


if __name__ == "__main__":
    main()
