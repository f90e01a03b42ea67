"""What the network learned, as pictures in TensorBoard (a Lightning callback).

At test time: the misclassified test digits captioned "true -> predicted", the confusion matrix
with counts, and the first layer's weights of a few hidden units as 28x28 images (what each
neuron looks for). Once per epoch, optionally: histograms of each layer's weights and gradients,
and of the lengths of the examples' own gradients in the epoch's last mini-batch.
Drawn with PIL and torchvision's make_grid: a matplotlib figure of 64 digits is slow to draw.
"""

from __future__ import annotations

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from PIL import Image, ImageDraw, ImageFont
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.functional.classification import multiclass_confusion_matrix
from torchvision.utils import make_grid

from mnist_mlp.training.backprop import DERIVATIVES, example_gradient_norms
from mnist_mlp.training.costs import CLASSES
from mnist_mlp.training.idx_files import DATASETS

# TensorBoard's image cards are about 350 pixels wide and shrink a wider picture to fit, its
# text with it: pictures this wide show at their own size, their text as drawn.
CARD_WIDTH = 350
FONT, SMALL_FONT, LINE = ImageFont.load_default(size=13), ImageFont.load_default(size=12), 16


def _text(
    draw: ImageDraw.ImageDraw, centre: tuple[float, float], text: str, fill, font=FONT
) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    position = (centre[0] - (right - left) / 2 - left, centre[1] - (bottom - top) / 2 - top)
    draw.text(position, text, fill=fill, font=font)


def class_names(dataset: str) -> list[str]:
    """The digits for MNIST; torchvision's names otherwise (Fashion-MNIST: T-shirt/top, ...)."""
    return (
        [str(digit) for digit in range(CLASSES)]
        if dataset == "MNIST"
        else DATASETS[dataset].classes
    )


def misclassified_grid(
    images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, names: list[str]
) -> torch.Tensor:
    """Up to 64 misclassified images, each in its own grey range, captioned "true -> predicted"
    (class names on two lines when they are words)."""
    words = max(map(len, names)) > 1
    scale, lines = (3, [0, 1]) if words else (2, [0])
    width = 28 * scale
    tiles = []
    for index in (predicted != labels).nonzero().flatten()[:64].tolist():
        digit = images[index].float().cpu()
        digit = (digit - digit.min()) / (digit.max() - digit.min()).clamp_min(1e-6)
        true, guess = names[labels[index]], names[predicted[index]]
        texts = [true, f"-> {guess}"] if words else [f"{true} -> {guess}"]
        caption = Image.new("L", (width, LINE * len(lines)))
        for line in lines:
            _text(ImageDraw.Draw(caption), (width / 2, LINE * (line + 0.5)), texts[line], 255)
        caption = torch.from_numpy(np.asarray(caption, dtype=np.float32) / 255)
        big = digit.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        tiles.append(torch.cat([caption, big]))
    if not tiles:  # every test image right
        tiles = [torch.zeros(LINE * len(lines) + width, width)]
    columns = (CARD_WIDTH - 2) // (width + 2)  # 6 digits or 4 named tiles a row
    return make_grid(torch.stack(tiles)[:, None], nrow=columns, padding=2, pad_value=0.5)


def confusion_image(
    labels: torch.Tensor, predicted: torch.Tensor, names: list[str]
) -> torch.Tensor:
    """Rows: the true class; columns: the predicted class; every cell shows its count. Classes
    with names are numbered, with the names listed below."""
    counts = multiclass_confusion_matrix(predicted, labels, CLASSES).cpu()
    cell, margin = 31, 30
    side = margin + cell * CLASSES + 4  # within CARD_WIDTH
    legend = [f"{number}: {name}" for number, name in enumerate(names)] if names[0] != "0" else []
    image = Image.new("RGB", (side, side + LINE * ((len(legend) + 1) // 2)), "white")
    draw = ImageDraw.Draw(image)
    _text(draw, (margin + cell * CLASSES / 2, 8), "predicted", "black")
    _text(draw, (15, 8), "true", "black")
    most = max(int(counts.max()), 1)
    for row in range(CLASSES):
        _text(draw, (margin - 10, margin + cell * row + cell / 2), str(row), "black")
        _text(draw, (margin + cell * row + cell / 2, margin - 10), str(row), "black")
        for column in range(CLASSES):
            count = int(counts[row, column])
            share = count / most
            x, y = margin + cell * column, margin + cell * row
            shade = (int(255 - 225 * share), int(255 - 170 * share), int(255 - 60 * share))
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=shade, outline=(210, 210, 210))
            colour = "white" if share > 0.5 else "black"
            _text(draw, (x + cell / 2, y + cell / 2), str(count), colour, SMALL_FONT)
    for number, entry in enumerate(legend):  # two columns
        column, row = number % 2, number // 2
        position = (margin + column * (side - margin) / 2, side + LINE * row)
        draw.text(position, entry, fill="black", font=FONT)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


# TensorBoard redraws every histogram in 30 linear bins (tensorflow/tensorboard#5871), so 64 lose
# nothing on screen.
HISTOGRAM_BINS = 64


def log_histogram(writer: SummaryWriter, tag: str, values: torch.Tensor, step: int) -> None:
    """A histogram of `values` counted by torch, for TensorBoard.

    SummaryWriter.add_histogram counts with numpy, whose OpenBLAS threads then spin beside torch's
    own and slow the start of the next epoch on a machine with few cores.
    """
    values = values.detach().flatten().double()
    if not values.isfinite().all():  # a step diverged; the next loss check stops the run
        return
    low, high = values.min().item(), values.max().item()
    if low == high:
        limits, counts = [high], [values.numel()]
    else:
        counts = torch.histc(values, HISTOGRAM_BINS, low, high).tolist()
        limits = torch.linspace(low, high, HISTOGRAM_BINS + 1)[1:].tolist()
    writer.add_histogram_raw(
        tag,
        min=low,
        max=high,
        num=values.numel(),
        sum=values.sum().item(),
        sum_squares=values.square().sum().item(),
        bucket_limits=limits,
        bucket_counts=counts,
        global_step=step,
    )


def log_layers(writer: SummaryWriter, module: LightningModule, step: int) -> None:
    """Histograms of each layer's weights and biases, and of their gradients when they have one."""
    for number, layer in enumerate(module.layers, start=1):
        for name, parameter in (("weight", layer.weight), ("bias", layer.bias)):
            log_histogram(writer, f"layer{number}/{name}", parameter, step)
            if parameter.grad is not None:
                log_histogram(writer, f"layer{number}/{name}.grad", parameter.grad, step)


class Pictures(Callback):
    def __init__(self, hidden_units: int, histograms: bool) -> None:
        self.hidden_units, self.histograms = hidden_units, histograms

    def on_train_start(self, trainer: Trainer, module: LightningModule) -> None:
        # The initial weights, at step 0, so that the first epoch's change shows.
        fresh = module.sgd_steps == 0  # not a resumed run
        if self.histograms and fresh and trainer.is_global_zero and trainer.logger is not None:
            log_layers(trainer.logger.experiment, module, 0)

    def on_train_batch_end(
        self, trainer: Trainer, module: LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        # At the epoch's last step, while .grad still holds that mini-batch's gradient
        # (Lightning clears the gradients before validation).
        last = batch_idx + 1 == trainer.num_training_batches
        if not (self.histograms and last and trainer.is_global_zero) or trainer.logger is None:
            return
        writer = trainer.logger.experiment
        log_layers(writer, module, module.sgd_steps)
        # How much the examples' desired changes disagree: the length of each example's own
        # gradient in the epoch's last mini-batch (docs/backprop.md, "The spread").
        images, labels = batch.last()  # mnist_mlp.training.data.Interval
        hp = module.hparams
        slope = DERIVATIVES[hp.activation]
        norms = example_gradient_norms(
            module.weights, module.biases, module.activation, slope, hp.loss, images, labels,
            hp.outputs,
        )  # fmt: skip
        log_histogram(writer, "examples/gradient_norm", norms, module.sgd_steps)

    def on_test_epoch_end(self, trainer: Trainer, module: LightningModule) -> None:
        if trainer.logger is None or not trainer.is_global_zero:
            return
        writer, step = trainer.logger.experiment, module.sgd_steps
        predicted = torch.cat(module.test_predictions)  # the test split in order (or its start)
        images, labels = (split[: len(predicted)] for split in trainer.datamodule.splits["test"])
        names = class_names(trainer.datamodule.hparams.dataset)
        misclassified = misclassified_grid(images, labels, predicted, names)
        writer.add_image("test/misclassified", misclassified, step)
        writer.add_image("test/confusion_matrix", confusion_image(labels, predicted, names), step)
        if len(module.layers) > 1:  # a hidden layer exists
            weights = module.layers[0].weight[: self.hidden_units].detach().cpu()
            grid = make_grid(weights.view(-1, 1, 28, 28), nrow=8, normalize=True, scale_each=True)
            writer.add_image("model/first_layer_weights", grid, step)
