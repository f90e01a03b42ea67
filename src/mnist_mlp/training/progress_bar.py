"""Lightning's progress bar, counting SGD steps.

Each Lightning step here is an interval of `log_every` SGD steps, so Lightning's own bar would
count the intervals: "18/18" for an epoch of 860 SGD steps.
"""

from __future__ import annotations

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class SGDStepsProgressBar(TQDMProgressBar):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epoch_start_step = 0

    @property
    def total_train_batches(self) -> int | float:
        """SGD steps in this epoch: its Lightning steps (after any limit) times the mini-batches
        each takes, at most every mini-batch of the epoch."""
        groups = super().total_train_batches
        steps = self.trainer.train_dataloader  # mnist_mlp.training.data.Intervals
        return min(groups * steps.log_every, steps.mini_batches)

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.epoch_start_step = module.sgd_steps
        super().on_train_epoch_start(trainer, module)

    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        if bar is None:
            return
        bar.n = module.sgd_steps - self.epoch_start_step
        bar.set_postfix(self.get_metrics(trainer, module))  # also redraws the bar
