"""The multilayer perceptron, its cost, and plain mini-batch SGD, as a LightningModule."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_mlp.backprop import DERIVATIVES, backprop
from mnist_mlp.errors import UsageError

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


class MLP(LightningModule):
    """x -> activation(W1 x + b1) -> ... -> W_L a + b_L = logits for the ten digits."""

    def __init__(
        self,
        hidden_sizes: list[int],
        activation: str,
        loss: str,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        backprop: str,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UsageError(
                f"model.activation={activation!r} is not known; use one of {list(ACTIVATIONS)}."
            )
        if loss not in LOSSES:
            raise UsageError(f"loss={loss!r} is not known; use one of {list(LOSSES)}.")
        if backprop not in ("autograd", "manual"):
            raise UsageError(f"model.backprop={backprop!r} is not known; use autograd or manual.")
        if backprop == "manual" and activation not in DERIVATIVES:
            raise UsageError(
                f"model.backprop=manual has no derivative for model.activation={activation!r}; "
                f"use one of {list(DERIVATIVES)} or model.backprop=autograd."
            )
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
        # The train loss is a plain running sum: MeanMetric.update cost 350-590 us here, add_ ~1 us.
        self.register_buffer("train_loss_sum", torch.zeros(()), persistent=False)
        self.train_examples = 0
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc = MulticlassAccuracy(CLASSES, average="micro")
        self.test_acc = MulticlassAccuracy(CLASSES, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        activations = images.flatten(1)
        for layer in self.layers[:-1]:
            activations = self.activation(layer(activations))
        return self.layers[-1](activations)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        images, labels = batch
        optimizer = self.optimizers()
        optimizer.zero_grad()
        if self.hparams.backprop == "manual":
            hp = self.hparams
            slope = DERIVATIVES[hp.activation]
            logits = backprop(self.layers, self.activation, slope, hp.loss, images, labels)
            loss = self.loss_fn(logits, labels)
        else:
            loss = self.loss_fn(self(images), labels)
            self.manual_backward(loss)
        optimizer.step()
        self.train_loss_sum.add_(loss.detach(), alpha=len(labels))
        self.train_examples += len(labels)
        return loss

    def on_train_epoch_start(self) -> None:
        self.train_loss_sum.zero_()
        self.train_examples = 0

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self.train_loss_sum / self.train_examples)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        images, labels = batch
        logits = self(images)
        loss_metric, acc_metric = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        loss_metric.update(self.loss_fn(logits, labels), len(labels))
        acc_metric.update(logits, labels)
        self.log(f"{stage}/loss", loss_metric, prog_bar=stage == "val")
        self.log(f"{stage}/acc", acc_metric, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.SGD(
            self.parameters(),
            lr=hp.lr,
            momentum=hp.momentum,
            nesterov=hp.nesterov,
            weight_decay=hp.weight_decay,
        )
