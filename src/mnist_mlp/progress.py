"""Lightning's progress bar, counting SGD steps.

Each Lightning step here takes several SGD steps (data.batches_per_step), so Lightning's own bar
would count those groups: "27/27" for an epoch of 860 SGD steps.
"""

from __future__ import annotations

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class SGDStepsProgressBar(TQDMProgressBar):
    def __init__(self, refresh_rate: int = 1, **kwargs: Any) -> None:
        super().__init__(refresh_rate, **kwargs)
        self.epoch_start_step = 0

    @property
    def total_train_batches(self) -> int | float:
        """SGD steps in this epoch: its Lightning steps (after any limit) times the mini-batches
        each takes, at most every mini-batch of the epoch."""
        groups = super().total_train_batches
        steps = self.trainer.train_dataloader  # mnist_mlp.data.TrainingSteps
        return min(groups * steps.per_step, steps.mini_batches)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any) -> None:
        self.epoch_start_step = trainer.global_step
        super().on_train_epoch_start(trainer, *args)

    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        last = batch_idx + 1 == trainer.num_training_batches
        if bar is None or not (last or (batch_idx + 1) % self.refresh_rate == 0):
            return
        bar.n = trainer.global_step - self.epoch_start_step
        bar.set_postfix(self.get_metrics(trainer, module))  # also redraws the bar
