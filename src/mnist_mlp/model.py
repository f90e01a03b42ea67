"""The multilayer perceptron, its cost, and plain mini-batch SGD, as a LightningModule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_mlp.backprop import DERIVATIVES, backprop, backprop_per_example
from mnist_mlp.config import Activation, Backprop, Loss, LrSchedule
from mnist_mlp.errors import Diverged

IMAGE_PIXELS, CLASSES = 28 * 28, 10
ACTIVATIONS = {
    Activation.relu: torch.relu,
    Activation.sigmoid: torch.sigmoid,
    Activation.tanh: torch.tanh,
}


def mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The notes' cost: squared distance between output activations and one-hot targets.

    The outputs are a softmax, a distribution over the ten classes like the one-hot target.
    Summed over the ten outputs and averaged over the batch: (1/n) sum_x ||y(x) - a(x)||^2.
    """
    outputs = torch.softmax(logits, dim=1)
    targets = F.one_hot(labels, CLASSES).to(outputs.dtype)
    return (outputs - targets).pow(2).sum(dim=1).mean()


LOSSES = {Loss.cross_entropy: F.cross_entropy, Loss.mse: mse}
BACKWARD_PASSES = {Backprop.manual: backprop, Backprop.per_example: backprop_per_example}
FULL_PRECISION = ("32-true", "64-true")  # Trainer.precision's names


class MLP(LightningModule):
    """x -> activation(W1 x + b1) -> ... -> W_L a + b_L = logits for the ten classes.

    Its settings are the fields of mnist_mlp.config.ModelConfig, by name.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.save_hyperparameters(settings)  # restored by load_from_checkpoint
        hp = self.hparams
        sizes = [IMAGE_PIXELS, *hp.hidden_sizes, CLASSES]
        self.layers = nn.ModuleList(
            nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:], strict=False)
        )
        self.activation = ACTIVATIONS[hp.activation]
        self.loss_fn = LOSSES[hp.loss]
        # Each Lightning step takes several SGD steps (MNISTDataModule.train_dataloader), so the
        # steps are written out: Lightning's optimizer wrapper counts each one in global_step.
        self.automatic_optimization = False
        self.plain_backward = False  # decided when fitting starts
        # This epoch's mini-batch losses stay on the device, kept as they come (cheaper than a
        # torchmetrics update: benchmarks/step_cost.py); read every check_finite_every steps
        # they give the exact step at which a loss stopped being finite, and at the epoch's end
        # the train loss. No host sync per step.
        self.step_losses: list[torch.Tensor] = []
        self.step_sizes: list[int] = []
        self.checked_steps = 0  # of this epoch, checked to be finite
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc = MulticlassAccuracy(CLASSES, average="micro")
        self.test_acc = MulticlassAccuracy(CLASSES, average="micro")
        # The test split's predicted classes, in order, for the pictures and per-class scores.
        self.test_predictions: list[torch.Tensor] = []

    def describe(self) -> str:
        """E.g. "784-512-256-10 relu, 535,818 parameters"."""
        sizes = [IMAGE_PIXELS, *self.hparams.hidden_sizes, CLASSES]
        count = sum(parameter.numel() for parameter in self.parameters())
        return f"{'-'.join(map(str, sizes))} {self.hparams.activation}, {count:,} parameters"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        *hidden, output = self.layers  # (slicing a ModuleList would build a new one per call)
        activations = images.flatten(1)
        for layer in hidden:
            activations = self.activation(layer(activations))
        return output(activations)

    def on_fit_start(self) -> None:
        # manual_backward readies DDP's gradient averaging and mixed precision's loss scaling;
        # on one device in full precision it would only call Lightning's backward hooks, on every
        # SGD step, so the backward is torch's own there (no callback here uses those hooks).
        trainer = self.trainer
        self.plain_backward = trainer.world_size == 1 and trainer.precision in FULL_PRECISION

    def gradient(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The cost of one mini-batch, with its gradient written into each parameter's .grad."""
        hp = self.hparams
        if hp.backprop != Backprop.autograd:  # written out: mnist_mlp/backprop.py
            backward = BACKWARD_PASSES[hp.backprop]
            slope = DERIVATIVES[hp.activation]
            weight_grads, bias_grads, logits = backward(
                self.layers, self.activation, slope, hp.loss, images, labels
            )
            for layer, weight_grad, bias_grad in zip(
                self.layers, weight_grads, bias_grads, strict=True
            ):
                layer.weight.grad, layer.bias.grad = weight_grad, bias_grad
            return self.loss_fn(logits, labels)
        loss = self.loss_fn(self(images), labels)
        if self.plain_backward:
            loss.backward()
        else:
            self.manual_backward(loss)
        return loss

    def training_step(
        self, batch: Iterable[tuple[torch.Tensor, torch.Tensor]], batch_idx: int
    ) -> torch.Tensor:
        """One SGD step per mini-batch of the batch (see MNISTDataModule.train_dataloader)."""
        optimizer = self.optimizers()
        for images, labels in batch:
            optimizer.zero_grad()
            loss = self.gradient(images, labels)
            optimizer.step()  # one step of trainer.global_step
            self.step_losses.append(loss.detach())
            self.step_sizes.append(len(labels))
        every = self.hparams.check_finite_every
        last = batch_idx + 1 == self.trainer.num_training_batches
        if last or len(self.step_losses) // every > self.checked_steps // every:
            self.check_finite()
        return loss

    def check_finite(self) -> None:
        """Stop training at the first non-finite loss among the steps not checked yet."""
        losses = torch.stack(self.step_losses[self.checked_steps :])
        finite = torch.isfinite(losses)
        if not finite.all():
            first = int((~finite).nonzero()[0])
            batch = self.checked_steps + first  # of this epoch
            step = self.global_step - len(self.step_losses) + batch  # SGD steps since the start
            raise Diverged(
                f"The loss became {losses[first].item()} at step {step} "
                f"(epoch {self.current_epoch}, mini-batch {batch}) "
                f"with lr={self.hparams.lr}: training diverged; try a smaller lr, "
                f"e.g. lr={self.hparams.lr / 10:g}."
            )
        self.checked_steps = len(self.step_losses)

    def on_train_epoch_start(self) -> None:
        self.step_losses, self.step_sizes, self.checked_steps = [], [], 0

    def log_sgd_step(self) -> None:
        """Put scalars at the number of SGD steps taken, whatever the mini-batches per step."""
        self.log("step", float(self.global_step))  # Lightning takes a logged "step" as the x

    def on_train_epoch_end(self) -> None:
        sizes = torch.tensor(self.step_sizes, device=self.device)
        self.log("train/loss", torch.stack(self.step_losses).mul(sizes).sum() / sizes.sum())
        self.log_sgd_step()
        if self.hparams.lr_schedule != LrSchedule.constant:
            self.lr_schedulers().step()

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        """Add one batch to the stage's loss and accuracy; return its predicted classes."""
        images, labels = batch
        logits = self(images)
        predicted = logits.argmax(1)
        getattr(self, f"{stage}_loss").update(self.loss_fn(logits, labels), len(labels))
        getattr(self, f"{stage}_acc").update(predicted, labels)
        return predicted

    def _log_scores(self, stage: str) -> None:
        """The stage's loss and accuracy over all its batches, logged once: a self.log per
        batch would cost more than the batch's forward pass."""
        for name in ("loss", "acc"):
            metric = getattr(self, f"{stage}_{name}")
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=stage == "val")
            metric.reset()
        self.log_sgd_step()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.test_predictions.append(self._evaluate(batch, "test"))

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def predict_step(self, images: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """The ten class probabilities of each image (normalised as the training data was)."""
        return torch.softmax(self(images), dim=1)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.SGD(
            self.parameters(),
            lr=hp.lr,
            momentum=hp.momentum,
            nesterov=hp.nesterov,
            weight_decay=hp.weight_decay,
        )
        if hp.lr_schedule == LrSchedule.constant:
            return {"optimizer": optimizer}
        # cosine: lr falls from its value to 0 along half a cosine, one step per epoch, so the
        # last epochs take small steps instead of oscillating around a minimum.
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}
