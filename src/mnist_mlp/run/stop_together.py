"""Stop every process of a run at the same interval end when one of them is asked to stop (Slurm's
signal before a job's time limit): with DDP, a process that stopped alone would leave the others
waiting in a gradient all-reduce until their connection breaks."""

from __future__ import annotations

import logging
import threading
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

# Set by the Slurm job's signal handler (mnist_mlp.slurm.jobs.stop); read at each interval's end,
# where what the handler had to say is logged (a handler that logs can lose its line).
STOP = threading.Event()
SAID: list[tuple[int, str]] = []


def ask_to_stop(level: int = logging.INFO, said: str | None = None) -> None:
    """For a signal handler: stop at the next interval end, and log `said` there."""
    if said is not None:
        SAID.append((level, said))
    STOP.set()


class StopTogether(Callback):
    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Any process asked: all stop here, as on SIGTERM (last.ckpt kept, metrics.json written).
        if trainer.strategy.reduce_boolean_decision(STOP.is_set(), all=False):
            while SAID:
                log.log(*SAID.pop(0))
            raise SIGTERMException
