"""batch_size=auto: a batch size for each interval, chosen from the measured gradient noise scale.

The notes' question, "choose a batch size for each step", answered as McCandlish et al. (2018)
suggest: below the noise scale B_simple the examples' desired changes disagree so much that a
bigger batch saves steps almost in proportion; above it the extra examples are mostly wasted. So
after every interval (auto_batch.every_examples examples) the batch doubles once the B_simple
measured so far has reached twice it, and halves once B_simple has fallen to half of it: it
follows B_simple by powers of two, within [smallest, largest]. The lr moves with it along the
rule the batch-size study measured: the best lr grows in proportion to the batch up to a cap
(config/schema.py, linear_scaling_lr), scaled so that `lr` is the lr at batch 64.
"""

from __future__ import annotations

import math
from typing import Any

from lightning import Callback, LightningModule, Trainer

from mnist_mlp.config.schema import linear_scaling_lr


def next_batch_size(current: int, b_simple: float, smallest: int, largest: int) -> int:
    """Twice the current batch once B_simple has reached twice it, half once B_simple has fallen
    to half of it, else the same, within [smallest, largest]. Between the two it stays: a
    B_simple that hovers near a midpoint would otherwise flip the batch (and the lr with it) back
    and forth. An unmeasurable B_simple (nan: the noise swamps the gradient) asks for more."""
    if math.isnan(b_simple) or b_simple >= 2 * current:
        wanted = 2 * current
    elif b_simple <= current / 2:
        wanted = current // 2
    else:
        wanted = current
    return min(max(wanted, smallest), largest)


class AutoBatchSize(Callback):
    """Sets the training data's batch size (mnist_mlp.training.data.Intervals) and the optimizer's
    lr after each interval, from the model's latest noise scale (mnist_mlp.measure.noise_scale).
    Its state is kept in checkpoints: a resumed run goes on with the batch size in force (the
    optimizer's own state keeps the lr)."""

    def __init__(self, smallest: int, largest: int) -> None:
        self.smallest, self.largest = smallest, largest
        self.batch_size = smallest  # of the next interval
        # After each interval: (SGD steps, examples seen, B_simple, its batch size, its lr)
        self.trace: list[tuple[int, int, float | None, int, float]] = []
        self.by_epoch: list[float] = []  # each epoch's mean batch size: its examples / its steps
        self.epoch_start = (0, 0)  # (SGD steps, examples seen) when this epoch started
        self.fitting = self.restored = False

    def setup(self, trainer: Trainer, module: LightningModule, stage: str) -> None:
        self.fitting = stage == "fit"  # before a checkpoint's state is loaded

    def state_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "trace": self.trace, "by_epoch": self.by_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.fitting:  # not when the best checkpoint is scored: this run's record stays
            self.batch_size, self.trace, self.by_epoch = (
                state["batch_size"], state["trace"], state["by_epoch"]
            )  # fmt: skip
            self.restored = True

    def on_train_start(self, trainer: Trainer, module: LightningModule) -> None:
        if not self.restored:  # `lr` is the lr at batch 64: move it to the first batch size
            self.move_lr(trainer, 64, self.batch_size)
        trainer.train_dataloader.batch_size = self.batch_size

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.epoch_start = (module.sgd_steps, module.examples_seen)

    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not module.noise.trace:
            return
        _, b_simple = module.noise.trace[-1]  # read at the end of this interval
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        measured = None if math.isnan(b_simple) else b_simple
        self.trace.append((module.sgd_steps, module.examples_seen, measured, self.batch_size, lr))
        chosen = next_batch_size(self.batch_size, b_simple, self.smallest, self.largest)
        self.move_lr(trainer, self.batch_size, chosen)
        self.batch_size = trainer.train_dataloader.batch_size = chosen

    def on_train_epoch_end(self, trainer: Trainer, module: LightningModule) -> None:
        steps = module.sgd_steps - self.epoch_start[0]
        examples = module.examples_seen - self.epoch_start[1]
        if steps:
            self.by_epoch.append(examples / steps)

    @staticmethod
    def move_lr(trainer: Trainer, old: int, new: int) -> None:
        """Scale the lr in force (whatever the schedule has made of it) by the rule's ratio."""
        ratio = linear_scaling_lr(new, 1) / linear_scaling_lr(old, 1)
        for group in trainer.optimizers[0].param_groups:
            group["lr"] *= ratio

    def record(self) -> dict[str, Any]:
        """For metrics.json: the batch sizes used, first, last and each epoch's mean, and the
        choice after each interval."""
        return {
            "batch_size_first": self.smallest,
            "batch_size_last": self.trace[-1][3] if self.trace else self.smallest,
            "batch_size_by_epoch": [round(size, 1) for size in self.by_epoch],
            "batch_size_trace": [list(entry) for entry in self.trace],
        }
