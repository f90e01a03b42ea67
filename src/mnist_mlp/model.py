"""The multilayer perceptron, its cost, and plain mini-batch SGD, as a LightningModule."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_mlp.backprop import DERIVATIVES, backprop, backprop_per_example, squared_norms
from mnist_mlp.config import Activation, Backprop, Loss, LrSchedule, linear_scaling_lr
from mnist_mlp.errors import Diverged
from mnist_mlp.hooks import plain_backward
from mnist_mlp.noise import NoiseScale

IMAGE_PIXELS, CLASSES = 28 * 28, 10
ACTIVATIONS = {
    Activation.relu: torch.relu,
    Activation.sigmoid: torch.sigmoid,
    Activation.tanh: torch.tanh,
}


def squared_errors(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each example's ||y(x) - a(x)||^2: the squared distance between its output activations (a
    softmax, a distribution over the ten classes like the target) and its one-hot target."""
    outputs = torch.softmax(logits, dim=1)
    # One-hot by comparison (F.one_hot cannot run under torch.func.vmap: tests/test_noise.py).
    targets = (labels[:, None] == torch.arange(CLASSES, device=labels.device)).to(outputs.dtype)
    return (outputs - targets).pow(2).sum(dim=1)


def mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The notes' cost, averaged over the batch: (1/n) sum_x ||y(x) - a(x)||^2."""
    return squared_errors(logits, labels).mean()


def cross_entropies(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each example's cross-entropy, -log softmax(logits)[label]: F.cross_entropy's values with
    reduction="none", which is slower on a CPU over ten classes (benchmarks/step_cost.py times
    both)."""
    return torch.logsumexp(logits, dim=1) - logits.gather(1, labels[:, None]).squeeze(1)


LOSSES = {Loss.cross_entropy: F.cross_entropy, Loss.mse: mse}
# Each example's own cost, whose batch mean is LOSSES'.
EXAMPLE_LOSSES = {Loss.cross_entropy: cross_entropies, Loss.mse: squared_errors}
BACKWARD_PASSES = {Backprop.manual: backprop, Backprop.per_example: backprop_per_example}


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
        self.example_loss = EXAMPLE_LOSSES[hp.loss]
        # Each Lightning step takes several SGD steps (MNISTDataModule.train_dataloader), so the
        # steps are written out: Lightning's optimizer wrapper counts each one in global_step.
        self.automatic_optimization = False
        # SGD steps between noise-scale measurements, 0 for none: decided when fitting starts,
        # as is whether torch's own backward does all that manual_backward would.
        self.noise_every = 0
        self.plain_backward = False
        self.fitting = False  # set by setup(), before a resumed fit loads its checkpoint
        self.noise = NoiseScale()
        # Each SGD step only keeps its logits and labels, on the device; every check_finite_every
        # steps they are read in one go: each example's cost gives the exact step at which the
        # loss stopped being finite and train/loss, their argmax train/acc. No host sync and no
        # extra operation per step (benchmarks/step_cost.py times the ways to keep them).
        self.step_logits: list[torch.Tensor] = []  # of the steps not checked yet
        self.step_labels: list[torch.Tensor] = []
        self.checked_steps = 0  # of this epoch, checked to be finite
        # For train/acc: of the examples of this epoch's checked steps, those classified right
        # before their step, and all of them.
        self.epoch_correct: torch.Tensor | float = 0.0
        self.epoch_examples = 0
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

    def forward(self, images: torch.Tensor, record: list | None = None) -> torch.Tensor:
        """The logits; with `record`, each layer's (input, output) is appended to it, the output
        keeping its gradient after backward (the examples' gradient norms are made of them)."""
        output = self.layers[-1]
        activations = images.flatten(1)
        for layer in self.layers:
            weighted = layer(activations)
            if record is not None:
                weighted.retain_grad()
                record.append((activations, weighted))
            activations = weighted if layer is output else self.activation(weighted)
        return activations

    def setup(self, stage: str) -> None:
        self.fitting = stage == "fit"

    def on_fit_start(self) -> None:
        # With DDP the gradient is averaged over the processes' batches but the examples' norms
        # are each process's own: the two would not belong to one batch size.
        self.noise_every = self.hparams.noise_scale_every if self.trainer.world_size == 1 else 0
        self.plain_backward = plain_backward(self.trainer)

    def gradient(
        self, images: torch.Tensor, labels: torch.Tensor, example_norms: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The cost of one mini-batch and its logits, with its gradient written into each
        parameter's .grad; with example_norms, also |each example's own gradient|^2."""
        hp = self.hparams
        if hp.backprop != Backprop.autograd:  # written out: mnist_mlp/backprop.py
            backward = BACKWARD_PASSES[hp.backprop]
            slope = DERIVATIVES[hp.activation]
            gradients = backward(
                self.layers, self.activation, slope, hp.loss, images, labels, example_norms
            )
            for layer, weight_grad, bias_grad in zip(
                self.layers, gradients.weights, gradients.biases, strict=True
            ):
                layer.weight.grad, layer.bias.grad = weight_grad, bias_grad
            loss = self.loss_fn(gradients.logits, labels)
            return loss, gradients.logits, gradients.example_squared_norms
        record = [] if example_norms else None
        logits = self(images, record)
        loss = self.loss_fn(logits, labels)
        if self.plain_backward:
            loss.backward()
        else:
            self.manual_backward(loss)  # DDP's gradient averaging, mixed precision's loss scaling
        if record is None:
            return loss, logits, None
        # Each layer's output gradient is delta_i / B (the cost is the batch mean).
        inputs, outputs = zip(*record, strict=True)
        deltas = [output.grad for output in outputs]
        with torch.no_grad():  # read, never differentiated: no graph kept alive with them
            return loss, logits, squared_norms(deltas, list(inputs)) * len(labels) ** 2

    def training_step(
        self, batch: Iterable[tuple[torch.Tensor, torch.Tensor]], batch_idx: int
    ) -> torch.Tensor:
        """One SGD step per mini-batch of the batch (see MNISTDataModule.train_dataloader)."""
        optimizer = self.optimizers()
        noise_every, step = self.noise_every, self.global_step
        for images, labels in batch:
            optimizer.zero_grad()
            measure = noise_every > 0 and step % noise_every == 0
            loss, logits, example_squared = self.gradient(images, labels, measure)
            if example_squared is not None:
                self.noise.add([p.grad for p in self.parameters()], example_squared)
            optimizer.step()  # one step of trainer.global_step
            self.step_logits.append(logits.detach())
            self.step_labels.append(labels)
            step += 1
        every = self.hparams.check_finite_every
        checked = self.checked_steps
        last = batch_idx + 1 == self.trainer.num_training_batches
        if last or (checked + len(self.step_logits)) // every > checked // every:
            self.check_and_log_steps()
        return loss

    def check_and_log_steps(self) -> None:
        """Stop training at the first non-finite loss among the steps not checked yet; else log
        their mean loss, and the noise scale, at the number of SGD steps taken."""
        sizes = [len(labels) for labels in self.step_labels]
        logits, labels = torch.cat(self.step_logits), torch.cat(self.step_labels)
        losses = self.example_loss(logits, labels)
        finite = torch.isfinite(losses)
        if not finite.all():
            first_example = int((~finite).nonzero()[0])
            ends = list(itertools.accumulate(sizes))  # where each unchecked step's examples end
            bad = bisect.bisect_right(ends, first_example)  # the unchecked step it belongs to
            loss = losses[ends[bad] - sizes[bad] : ends[bad]].mean().item()
            batch = self.checked_steps + bad  # of this epoch
            step = self.global_step - len(sizes) + bad  # SGD steps since the start
            raise Diverged(
                f"The loss became {loss} at step {step} "
                f"(epoch {self.current_epoch}, mini-batch {batch}) "
                f"with lr={self.hparams.lr}: training diverged; try a smaller lr, "
                f"e.g. lr={self.stable_lr():g}."
            )
        predicted = logits.max(dim=1).indices  # argmax's, sooner on a CPU over ten classes
        self.epoch_correct = self.epoch_correct + (predicted == labels).sum()
        self.epoch_examples += len(labels)
        self.checked_steps += len(sizes)
        self.step_logits, self.step_labels = [], []
        scalars = {"train/loss": float(losses.mean())}
        scalars |= self.noise.read(self.global_step)
        for logger in self.loggers:
            logger.log_metrics(scalars, step=self.global_step)

    def stable_lr(self) -> float:
        """An lr to suggest after a divergence: a tenth of this one, or the lr the batch-size
        study found stable and near-best at this batch size, whichever is smaller."""
        return min(self.hparams.lr / 10, linear_scaling_lr(self.hparams.batch_size, 1))

    def on_train_epoch_start(self) -> None:
        # The lr this epoch's steps take (the cosine schedule moves it once per epoch).
        lr = self.optimizers().optimizer.param_groups[0]["lr"]
        for logger in self.loggers:
            logger.log_metrics({"train/lr": lr}, step=self.global_step)
        self.step_logits, self.step_labels, self.checked_steps = [], [], 0
        self.epoch_correct, self.epoch_examples = 0.0, 0

    def log_sgd_step(self) -> None:
        """Put scalars at the number of SGD steps taken, whatever the mini-batches per step."""
        self.log("step", float(self.global_step))  # Lightning takes a logged "step" as the x

    def on_train_epoch_end(self) -> None:
        if self.step_logits:  # steps the last check did not see (training was stopped early)
            self.check_and_log_steps()
        # The epoch's mini-batches as they came, each classified before its SGD step.
        if self.epoch_examples:
            correct = float(self.epoch_correct) / self.epoch_examples
            for logger in self.loggers:
                logger.log_metrics({"train/acc": correct}, step=self.global_step)
        self.noise.end_epoch()
        if self.hparams.lr_schedule != LrSchedule.constant:
            self.lr_schedulers().step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # So a resumed run keeps them.
        checkpoint["noise_scale"] = {"epochs": self.noise.epochs, "trace": self.noise.trace}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.fitting:  # scoring a checkpoint keeps this run's history
            return
        saved = checkpoint.get("noise_scale", {})
        self.noise.epochs, self.noise.trace = saved.get("epochs", []), saved.get("trace", [])

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
