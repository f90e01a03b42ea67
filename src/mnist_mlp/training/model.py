"""The multilayer perceptron, its cost, and plain mini-batch SGD, as a LightningModule.

One Lightning step is one interval: `log_every` SGD steps, one per mini-batch (training/data.py
hands them over together; with batch_size=auto, auto_batch.every_examples examples). torch's SGD
takes each step; Lightning's optimizer takes the interval's last, so Lightning counts intervals
(trainer.global_step) and its loop, progress bar, callbacks and step hooks run once per
interval, not once per SGD step. The model counts the SGD steps and examples itself: they are
the x of every logged scalar. At the end of each interval the loss is checked for divergence and
logged; at its first step the noise scale is measured.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_mlp.config.schema import Activation, Backprop, Init, LrSchedule, linear_scaling_lr
from mnist_mlp.errors import Diverged
from mnist_mlp.measure.noise_scale import NoiseScale
from mnist_mlp.training.backprop import DERIVATIVES, backprop, backprop_per_example, by_autograd
from mnist_mlp.training.costs import CLASSES, batch_cost, example_cost

IMAGE_PIXELS = 28 * 28
ACTIVATIONS = {
    Activation.relu: torch.relu,
    Activation.sigmoid: torch.sigmoid,
    Activation.tanh: torch.tanh,
}
BACKWARD_PASSES = {
    Backprop.autograd: by_autograd,
    Backprop.manual: backprop,  # written out: training/backprop.py
    Backprop.per_example: backprop_per_example,
}
Batch = tuple[torch.Tensor, torch.Tensor]
Interval = Sequence[Batch]  # sized and iterable: mnist_mlp.training.data.Interval


class MLP(LightningModule):
    """x -> activation(W1 x + b1) -> ... -> W_L a + b_L = logits for the ten classes.

    Its settings are the fields of mnist_mlp.config.schema.ModelConfig, by name.
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.save_hyperparameters(settings)  # restored by load_from_checkpoint
        hp = self.hparams
        sizes = [IMAGE_PIXELS, *hp.hidden_sizes, CLASSES]
        self.layers = nn.ModuleList(
            nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes, sizes[1:], strict=False)
        )
        if hp.init == Init.normal:
            for parameter in self.layers.parameters():
                nn.init.normal_(parameter)
        self.activation = ACTIVATIONS[hp.activation]
        # network.py's self.weights and self.biases: the layers' parameters (moves keep the objects)
        self.weights = [layer.weight for layer in self.layers]
        self.biases = [layer.bias for layer in self.layers]
        # The backward pass of model.backprop, bound once to this network and cost: one call a step.
        self.backward_pass = functools.partial(
            BACKWARD_PASSES[hp.backprop], self.weights, self.biases, self.activation,
            DERIVATIVES[hp.activation], hp.loss, outputs=hp.outputs,
        )  # fmt: skip
        self.cost = batch_cost(hp.loss, hp.outputs)
        self.example_cost = example_cost(hp.loss, hp.outputs)
        # Several SGD steps per Lightning step, so they are written out (manual optimization).
        self.automatic_optimization = False
        self.noise = NoiseScale()
        self.sgd_steps = self.examples_seen = 0  # since training started, kept in checkpoints
        self.fitting = False  # set by setup(), before a resumed fit loads its checkpoint
        self.distributed = False  # set when fitting starts
        # This epoch's examples, and those classified right before their step (train/acc).
        self.epoch_examples, self.epoch_correct = 0, torch.zeros(())
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc = MulticlassAccuracy(CLASSES, average="micro")
        self.test_acc = MulticlassAccuracy(CLASSES, average="micro")
        # The test split's predicted classes, in order, for the pictures and per-class scores.
        self.test_predictions: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The logits."""
        *hidden, output = self.layers
        activations = images.flatten(1)
        for layer in hidden:
            activations = self.activation(layer(activations))
        return output(activations)

    def setup(self, stage: str) -> None:
        self.fitting = stage == "fit"

    def on_fit_start(self) -> None:
        self.distributed = self.trainer.world_size > 1
        if self.distributed and self.hparams.noise_scale:
            rank_zero_info(
                "The gradient noise scale is not measured under DDP: the step's gradient is "
                "averaged over the processes but each example's norm is its own process's."
            )

    def gradient(
        self, images: torch.Tensor, labels: torch.Tensor, example_norms: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Put the gradient of this mini-batch's cost in each parameter's .grad; return the logits
        and, with example_norms, |each example's own gradient|^2."""
        if self.distributed:  # DDP averages the gradient over the processes in this backward
            self.zero_grad()
            logits = self(images)
            self.manual_backward(self.cost(logits, labels))
            return logits.detach(), None
        gradients = self.backward_pass(images, labels, example_norms)
        for weight, bias, weight_grad, bias_grad in zip(
            self.weights, self.biases, gradients.weights, gradients.biases, strict=True
        ):
            weight.grad, bias.grad = weight_grad, bias_grad
        return gradients.logits, gradients.example_squared_norms

    def training_step(self, interval: Interval, interval_index: int) -> None:
        """One SGD step per mini-batch of the interval: w <- w - lr * gradient of its cost."""
        lightning_sgd = self.optimizers()  # counts its steps, calls the step hooks
        sgd = lightning_sgd.optimizer  # torch's own
        # With DDP the gradient is averaged over the processes' batches but the examples' norms
        # are each process's own: the two would not belong to one batch size.
        measure_noise = self.hparams.noise_scale and not self.distributed
        steps: list[Batch] = []  # each step's logits and labels
        last = len(interval)
        for number, (images, labels) in enumerate(interval, start=1):
            logits, example_squared = self.gradient(images, labels, measure_noise)
            if measure_noise:  # at the interval's first step
                self.noise.add([p.grad for p in self.parameters()], example_squared)
                measure_noise = False
            (lightning_sgd if number == last else sgd).step()
            steps.append((logits, labels))
        self.sgd_steps += len(steps)
        self.examples_seen += sum(labels.shape[0] for _, labels in steps)
        self.check_and_log(steps)

    def check_and_log(self, steps: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Stop training at the first step whose loss is not finite; else log the interval's
        mean loss, its batch size and lr (batch_size=auto moves them) and the noise scale, at
        the number of SGD steps taken. Read once per interval: each read waits for the device."""
        logits, labels = (torch.cat(parts) for parts in zip(*steps, strict=True))
        losses = self.example_cost(logits, labels)
        finite = torch.isfinite(losses)
        batch_size = len(steps[0][1])  # every mini-batch but an epoch's last is full
        lr = self.optimizers().optimizer.param_groups[0]["lr"]
        if not finite.all():
            bad = int((~finite).nonzero()[0]) // batch_size
            loss = self.example_cost(*steps[bad]).mean().item()
            step = self.sgd_steps - len(steps) + bad  # counted from 0
            raise Diverged(
                f"The loss became {loss} at step {step} (epoch {self.current_epoch}) with "
                f"lr={lr:g} at batch size {batch_size}: training diverged; try a smaller lr, "
                f"e.g. lr={min(lr / 10, linear_scaling_lr(batch_size, 1)):g}."
            )
        self.epoch_correct = self.epoch_correct + (logits.max(dim=1).indices == labels).sum()
        self.epoch_examples += len(labels)
        scalars = {
            "train/loss": float(losses.mean()),
            "train/batch_size": batch_size,
            "train/lr": lr,
            "train/examples": self.examples_seen,  # a fair x when the batch size changes
        }
        self.log_at_step(scalars | self.noise.read(self.sgd_steps))

    def log_at_step(self, scalars: dict[str, float]) -> None:
        """Straight to the loggers, at the number of SGD steps taken (a self.log costs more than
        a small network's SGD step)."""
        for logger in self.loggers:
            logger.log_metrics(scalars, step=self.sgd_steps)

    def on_train_epoch_start(self) -> None:
        self.epoch_examples, self.epoch_correct = 0, torch.zeros((), device=self.device)

    def on_train_epoch_end(self) -> None:
        if self.epoch_examples:  # each mini-batch classified before its SGD step
            self.log_at_step({"train/acc": float(self.epoch_correct) / self.epoch_examples})
        self.noise.end_epoch()
        if self.hparams.lr_schedule != LrSchedule.constant:
            self.lr_schedulers().step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # a resumed run keeps them
        checkpoint["noise_scale"] = self.noise.state_dict()
        checkpoint["sgd_steps"], checkpoint["examples_seen"] = self.sgd_steps, self.examples_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.fitting:  # scoring a checkpoint keeps this run's history
            return
        self.noise.load_state_dict(checkpoint.get("noise_scale", {}))
        self.sgd_steps, self.examples_seen = checkpoint["sgd_steps"], checkpoint["examples_seen"]

    def evaluate(self, batch: Batch, stage: str) -> torch.Tensor:
        """Add one batch to the stage's loss and accuracy; return its predicted classes."""
        images, labels = batch
        logits = self(images)
        predicted = logits.argmax(1)
        getattr(self, f"{stage}_loss").update(self.cost(logits, labels), len(labels))
        getattr(self, f"{stage}_acc").update(predicted, labels)
        return predicted

    def log_scores(self, stage: str) -> None:
        """The stage's loss and accuracy over all its batches, logged once, at the SGD steps
        taken (Lightning takes a logged "step" as the x)."""
        for name in ("loss", "acc"):
            metric = getattr(self, f"{stage}_{name}")
            self.log(f"{stage}/{name}", metric.compute(), prog_bar=stage == "val")
            metric.reset()
        self.log("step", float(self.sgd_steps))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_scores("val")

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self.test_predictions.append(self.evaluate(batch, "test"))

    def on_test_epoch_end(self) -> None:
        self.log_scores("test")

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
            foreach=None if self.device.type == "cuda" else False,  # torch's CPU choice, made once
        )
        if hp.lr_schedule == LrSchedule.constant:
            return {"optimizer": optimizer}
        # cosine: lr falls from its value to 0 along half a cosine, one step per epoch, so the
        # last epochs take small steps instead of oscillating around a minimum.
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": schedule}
