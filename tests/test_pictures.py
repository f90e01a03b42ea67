"""A default run's TensorBoard holds the pictures: misclassified digits, confusion, weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from mnist_mlp.inspection.pictures import (
    class_names,
    confusion_image,
    log_histogram,
    misclassified_grid,
)
from mnist_mlp.run.fit import fit_and_test


def tags(run_dir: Path) -> dict[str, list[str]]:
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "histograms": 0})
    return events.Reload().Tags()


def test_a_run_logs_pictures_and_histograms(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    fit_and_test(make_cfg("epochs=1"), tmp_path)
    logged = tags(tmp_path)
    assert {"test/misclassified", "test/confusion_matrix", "model/first_layer_weights"} <= set(
        logged["images"]
    )
    assert {"layer1/weight", "layer1/weight.grad", "layer2/bias.grad"} <= set(logged["histograms"])
    # The initial weights too, at step 0: the first epoch's change shows.
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0}).Reload()
    assert [event.step for event in events.Histograms("layer1/weight")] == [0, 16]
    assert [event.step for event in events.Histograms("layer1/weight.grad")] == [16]


def test_pictures_name_the_classes_of_fashion_mnist() -> None:
    names = class_names("FashionMNIST")
    assert names[:2] == ["T-shirt/top", "Trouser"] and class_names("MNIST")[7] == "7"
    labels, predicted = torch.tensor([0, 1, 9]), torch.tensor([6, 1, 7])
    images = torch.rand(3, 28, 28)
    grid = misclassified_grid(images, labels, predicted, names)
    digits = misclassified_grid(images, labels, predicted, class_names("MNIST"))
    assert grid.shape[1] > digits.shape[1]  # wider tiles with two caption lines for words
    with_legend = confusion_image(labels, predicted, names)
    assert with_legend.shape[1] > confusion_image(labels, predicted, class_names("MNIST")).shape[1]


def test_histograms_can_be_switched_off(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    fit_and_test(make_cfg("epochs=1", "pictures.histograms=false"), tmp_path)
    logged = tags(tmp_path)
    assert logged["histograms"] == [] and "test/confusion_matrix" in logged["images"]


def test_histograms_count_every_value(tmp_path: Path) -> None:
    values = torch.tensor([[-1.0, 0.0, 0.5], [0.5, 2.0, 3.0]])
    with SummaryWriter(str(tmp_path)) as writer:
        log_histogram(writer, "spread", values, step=3)
        log_histogram(writer, "constant", torch.full((4,), 0.25), step=3)
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0}).Reload()
    (spread,) = events.Histograms("spread")
    assert spread.step == 3
    value = spread.histogram_value
    assert (value.min, value.max, value.num, value.sum) == (-1.0, 3.0, 6, 5.0)
    assert value.sum_squares == 1 + 0.25 + 0.25 + 4 + 9
    assert sum(value.bucket) == 6 and value.bucket_limit[-1] == 3.0
    (constant,) = events.Histograms("constant")
    assert list(constant.histogram_value.bucket) == [4]
