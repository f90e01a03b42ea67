"""Steps to a target: the first SGD step, examples seen and training seconds at which val/acc
reached study.target (python train.py -m experiment=batch_size; docs/batch-size.md).

The target is checked every study.every_examples training examples (at the end of the interval
that reaches them) at any batch size, so a large batch is not judged late by coarse checks, nor a
small one early by fine checks. The run stops once the target is reached.
"""

from __future__ import annotations

import logging
import time

import torch
from lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


class StepsToTarget(Callback):
    """Checks val/acc every `every_examples` training examples (experiment=batch_size makes an
    interval about that many examples at any fixed batch size)."""

    def __init__(self, target: float, every_examples: int) -> None:
        self.target, self.every_examples = target, every_examples
        self.reached: dict[str, float | int] = {}  # steps, examples, seconds
        # Training only: the study's checks and Lightning's validation are left out.
        self.training_seconds = 0.0
        self.clock = 0.0
        self.training = False
        self.training_size = 0
        self.fitting = False
        self.checks_done = 0

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.training_size = len(trainer.datamodule.splits["train"][1])
        self.clock, self.training = time.perf_counter(), True

    def on_validation_start(self, trainer: Trainer, module: LightningModule) -> None:
        if self.training:
            self.training_seconds += time.perf_counter() - self.clock

    def on_validation_end(self, trainer: Trainer, module: LightningModule) -> None:
        self.clock = time.perf_counter()

    def setup(self, trainer: Trainer, module: LightningModule, stage: str) -> None:
        self.fitting = stage == "fit"  # before a checkpoint's state is loaded

    def state_dict(self) -> dict:
        """Kept in checkpoints, so a resumed job goes on counting."""
        return {
            "reached": self.reached,
            "training_seconds": self.training_seconds,
            "checks_done": self.checks_done,
        }

    def load_state_dict(self, state: dict) -> None:
        if self.fitting:  # not when the best checkpoint is scored: this run's record stays
            self.__dict__.update(state)

    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        # The checks fall at the first interval end on or after each multiple of every_examples.
        checks = module.examples_seen // self.every_examples
        if not self.reached and checks > self.checks_done:
            self.checks_done = checks
            self.check(trainer, module)

    def check(self, trainer: Trainer, module: LightningModule) -> None:
        now = time.perf_counter()
        self.training_seconds += now - self.clock
        images, labels = trainer.datamodule.splits["val"]
        with torch.no_grad():
            correct = sum(
                (module(part).argmax(1) == part_labels).sum()
                for part, part_labels in zip(images.split(1000), labels.split(1000), strict=True)
            )
        accuracy = float(correct) / len(labels)
        if accuracy >= self.target:
            self.reached = {
                "steps": module.sgd_steps,
                "examples": module.examples_seen,
                "seconds": self.training_seconds,
            }
            log.info(
                f"val/acc {accuracy:.4f} reached the target {self.target} after "
                f"{module.sgd_steps} SGD steps ({module.examples_seen} examples, "
                f"{self.training_seconds:.1f} s of training): stopping."
            )
            trainer.should_stop = True
        self.clock = time.perf_counter()

    def record(self) -> dict[str, float | int | bool | None]:
        """For metrics.json: whether and when the target was reached."""
        return {
            "train_examples": self.training_size,  # a batch this large is full-batch GD
            "target_reached": bool(self.reached),
            "target_checks": self.checks_done,  # 1: reached at the first, so too easy a target
            **{f"target_{key}": self.reached.get(key) for key in ("steps", "examples", "seconds")},
        }
