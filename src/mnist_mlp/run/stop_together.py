"""Stop every process of a run at the same interval end when one of them is asked to stop (Slurm's
signal before a job's time limit): with DDP, a process that stopped alone would leave the others
waiting in a gradient all-reduce until their connection breaks."""

from __future__ import annotations

import threading
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

# Set by the Slurm job's signal handler (mnist_mlp.slurm.jobs.stop); read at each interval's end.
STOP = threading.Event()


class StopTogether(Callback):
    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Any process asked: all stop here, as on SIGTERM (last.ckpt kept, metrics.json written).
        if trainer.strategy.reduce_boolean_decision(STOP.is_set(), all=False):
            raise SIGTERMException
