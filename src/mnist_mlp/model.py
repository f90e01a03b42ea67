"""The multilayer perceptron, its cost, and plain mini-batch SGD, as a LightningModule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lightning import LightningModule
from lightning.pytorch.plugins.precision import Precision
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_mlp.backprop import DERIVATIVES, backprop
from mnist_mlp.errors import Diverged

IMAGE_PIXELS, CLASSES = 28 * 28, 10
ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The seed's cost: squared distance between output activations and one-hot targets.

    The outputs are a softmax, a distribution over the ten digits like the one-hot target.
    Summed over the ten outputs and averaged over the batch: (1/n) sum_x ||y(x) - a(x)||^2.
    """
    outputs = torch.softmax(logits, dim=1)
    targets = F.one_hot(labels, CLASSES).to(outputs.dtype)
    return (outputs - targets).pow(2).sum(dim=1).mean()


LOSSES = {"cross_entropy": F.cross_entropy, "mse": mse}
LR_SCHEDULES = ("constant", "cosine")


class MLP(LightningModule):
    """x -> activation(W1 x + b1) -> ... -> W_L a + b_L = logits for the ten digits."""

    def __init__(
        self,
        hidden_sizes: list[int],
        activation: str,
        loss: str,
        lr: float,
        batch_size: int,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        lr_schedule: str,
        backprop: str,
        check_finite_every: int,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        sizes = [IMAGE_PIXELS, *hidden_sizes, CLASSES]
        self.layers = nn.ModuleList(
            nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:], strict=False)
        )
        self.activation = ACTIVATIONS[activation]
        self.loss_fn = LOSSES[loss]
        # The step is written out (gradient, then SGD step) rather than left to Lightning's
        # automatic optimization, whose closure costs time on every batch.
        self.automatic_optimization = False
        # Scores accumulate on the device and are read once per epoch: no host sync per step.
        # Each step's summed loss goes into one slot of a plain tensor (one small op; a
        # torchmetrics MeanMetric.update costs ~6x more, benchmarks/step_cost.py);
        # the slots give the epoch's train loss and, read every check_finite_every steps,
        # the exact step at which a loss stopped being finite.
        self.batch_losses: torch.Tensor | None = None
        self.steps_in_epoch = self.train_examples = 0
        self.plain_steps = True  # decided when fitting starts (on_fit_start)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc = MulticlassAccuracy(CLASSES, average="micro")
        self.test_acc = MulticlassAccuracy(CLASSES, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        *hidden, output = self.layers  # (slicing a ModuleList would build a new one per call)
        activations = images.flatten(1)
        for layer in hidden:
            activations = self.activation(layer(activations))
        return output(activations)

    def on_fit_start(self) -> None:
        # On one device in 32-bit, Lightning's manual_backward and optimizer.step would add only
        # hook calls, ~60 us per SGD step here (8% of a bare step at batch 256), so the step
        # is plain autograd and torch's own SGD, and Lightning's count of optimizer steps is kept
        # by hand. Otherwise Lightning's wrappers run: they ready DDP's gradient averaging and
        # mixed precision's loss scaling.
        self.plain_steps = self.trainer.world_size == 1 and (
            type(self.trainer.precision_plugin) is Precision
        )

    def gradient(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The cost of one mini-batch, with its gradient written into each parameter's .grad."""
        hp = self.hparams
        if hp.backprop == "manual":
            slope = DERIVATIVES[hp.activation]
            logits = backprop(self.layers, self.activation, slope, hp.loss, images, labels)
            return self.loss_fn(logits, labels)
        loss = self.loss_fn(self(images), labels)
        if self.plain_steps:
            loss.backward()
        else:
            self.manual_backward(loss)
        return loss

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        """One SGD step per mini-batch of the slice (see MNISTDataModule.train_dataloader)."""
        images, labels = batch
        batch_size = self.hparams.batch_size
        if self.batch_losses is None:  # the epoch's first step: one slot per mini-batch
            slots = self.trainer.num_training_batches * math.ceil(len(labels) / batch_size)
            self.batch_losses = torch.zeros(slots, device=labels.device)
        optimizer = self.optimizers()
        if self.plain_steps:
            optimizer = optimizer.optimizer
            steps_taken = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        steps_before = slot = self.steps_in_epoch
        mini_batches = zip(images.split(batch_size), labels.split(batch_size), strict=True)
        for slot, (x, y) in enumerate(mini_batches, start=steps_before):
            optimizer.zero_grad()
            loss = self.gradient(x, y)
            optimizer.step()
            if self.plain_steps:  # as Lightning's optimizer.step would count it
                steps_taken.increment_ready()
                steps_taken.increment_completed()
            torch.mul(loss.detach(), len(y), out=self.batch_losses[slot])
        self.steps_in_epoch = slot + 1
        self.train_examples += len(labels)
        every = self.hparams.check_finite_every
        last = batch_idx + 1 == self.trainer.num_training_batches
        if last or self.steps_in_epoch // every > steps_before // every:
            self.check_finite()
        return loss

    def check_finite(self) -> None:
        """Stop training at the first non-finite loss of this epoch's steps so far."""
        finite = torch.isfinite(self.batch_losses[: self.steps_in_epoch])
        if not finite.all():
            batch = int((~finite).nonzero()[0])
            step = self.global_step - self.steps_in_epoch + batch  # SGD steps since the start
            raise Diverged(
                f"The loss became {self.batch_losses[batch].item()} at step {step} "
                f"(epoch {self.current_epoch}, mini-batch {batch}) "
                f"with lr={self.hparams.lr}: training diverged; try a smaller lr, "
                f"e.g. lr={self.hparams.lr / 10:g}."
            )

    def on_train_epoch_start(self) -> None:
        self.batch_losses, self.steps_in_epoch, self.train_examples = None, 0, 0

    def log_sgd_step(self) -> None:
        """Put scalars at the number of SGD steps taken, whatever the mini-batches per step."""
        self.log("step", float(self.global_step))  # Lightning takes a logged "step" as the x

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self.batch_losses.sum() / self.train_examples)
        self.log_sgd_step()
        if self.hparams.lr_schedule != "constant":
            self.lr_schedulers().step()

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        images, labels = batch
        logits = self(images)
        loss_metric, acc_metric = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        loss_metric.update(self.loss_fn(logits, labels), len(labels))
        acc_metric.update(logits, labels)
        self.log(f"{stage}/loss", loss_metric, prog_bar=stage == "val")
        self.log(f"{stage}/acc", acc_metric, prog_bar=stage == "val")
        self.log_sgd_step()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.parameters(),
            lr=hp.lr,
            momentum=hp.momentum,
            nesterov=hp.nesterov,
            weight_decay=hp.weight_decay,
        )
        if hp.lr_schedule == "constant":
            return {"optimizer": optimizer}
        # cosine: lr falls from its value to 0 along half a cosine, one step per epoch, so the
        # last epochs take small steps instead of oscillating around a minimum.
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}
