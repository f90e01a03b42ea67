"""Steps to a target: the first SGD step, examples seen and training seconds at which val/acc
reached study.target (python train.py -m experiment=batch_size; docs/batch-size.md).

Validation for the target runs every `every_examples` training examples, whatever the batch size,
so a large batch is not judged late by coarse checks; the run stops once the target is reached.
"""

from __future__ import annotations

import logging
import time

import torch
from lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


class StepsToTarget(Callback):
    def __init__(self, target: float, every_examples: int) -> None:
        self.target, self.every_examples = target, every_examples
        self.reached: dict[str, float | int] = {}  # step, examples, seconds
        self.next_check = every_examples
        self.epoch_start_step = 0
        # Training only: the study's checks and Lightning's validation are left out.
        self.training_seconds = 0.0
        self.clock = 0.0
        self.training = False
        self.training_size = 0
        self.fitting = False

    def on_train_epoch_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.training_size = len(trainer.datamodule.splits["train"][1])
        self.epoch_start_step = trainer.global_step
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
        keys = ("reached", "next_check", "training_seconds")
        return {key: getattr(self, key) for key in keys}

    def load_state_dict(self, state: dict) -> None:
        if self.fitting:  # not when the best checkpoint is scored: this run's record stays
            self.__dict__.update(state)

    def examples_seen(self, trainer: Trainer) -> int:
        # Every mini-batch but an epoch's last is full, so the epoch's steps so far were.
        batch_size = trainer.datamodule.hparams.batch_size
        steps = trainer.global_step - self.epoch_start_step
        return trainer.current_epoch * self.training_size + steps * batch_size

    def on_before_optimizer_step(self, trainer, module: LightningModule, optimizer) -> None:
        """Called before each SGD step: global_step steps have been taken."""
        examples = self.examples_seen(trainer)
        if examples >= self.next_check and not self.reached:
            self.check(trainer, module, examples)

    def on_train_epoch_end(self, trainer: Trainer, module: LightningModule) -> None:
        if not self.reached:  # after the epoch's last step
            self.check(trainer, module, (trainer.current_epoch + 1) * self.training_size)

    def check(self, trainer: Trainer, module: LightningModule, examples: int) -> None:
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
                "steps": trainer.global_step,
                "examples": examples,
                "seconds": self.training_seconds,
            }
            log.info(
                f"val/acc {accuracy:.4f} reached the target {self.target} after "
                f"{trainer.global_step} SGD steps ({examples} examples, "
                f"{self.training_seconds:.1f} s of training): stopping."
            )
            trainer.should_stop = True
        self.next_check = (examples // self.every_examples + 1) * self.every_examples
        self.clock = time.perf_counter()

    def record(self) -> dict[str, float | int | bool | None]:
        """For metrics.json: whether and when the target was reached."""
        return {
            "train_examples": self.training_size,  # a batch this large is full-batch GD
            "target_reached": bool(self.reached),
            **{f"target_{key}": self.reached.get(key) for key in ("steps", "examples", "seconds")},
        }
