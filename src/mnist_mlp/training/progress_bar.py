"""Lightning's progress bar, counting SGD steps.

Each Lightning step here is an interval of SGD steps, so Lightning's own bar would count the
intervals: "18/18" for an epoch of 860 SGD steps.
"""

from __future__ import annotations

import math
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class SGDStepsProgressBar(TQDMProgressBar):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epoch_start_step = self.epoch_start_examples = 0

    def epoch_examples(self) -> int:
        """Training examples in this epoch: its Lightning steps (after any limit) times the
        examples each takes, at most every example."""
        intervals = self.trainer.train_dataloader  # mnist_mlp.training.data.Intervals
        return min(super().total_train_batches * intervals.interval_examples, intervals.examples)

    @property
    def total_train_batches(self) -> int | float:
        """SGD steps in this epoch, at the batch size now in force."""
        return math.ceil(self.epoch_examples() / self.trainer.train_dataloader.batch_size)

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.epoch_start_step = module.sgd_steps
        self.epoch_start_examples = module.examples_seen
        super().on_train_epoch_start(trainer, module)

    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        if bar is None:
            return
        bar.n = module.sgd_steps - self.epoch_start_step
        # batch_size=auto: the steps left are the examples left at the batch now in force.
        examples_left = self.epoch_examples() - (module.examples_seen - self.epoch_start_examples)
        bar.total = bar.n + math.ceil(max(examples_left, 0) / trainer.train_dataloader.batch_size)
        bar.set_postfix(self.get_metrics(trainer, module))  # also redraws the bar
