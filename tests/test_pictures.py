"""A default run's TensorBoard holds the pictures: misclassified digits, confusion, weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from mnist_mlp.pictures import log_histogram
from mnist_mlp.train import train


def tags(run_dir: Path) -> dict[str, list[str]]:
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "histograms": 0})
    return events.Reload().Tags()


def test_a_run_logs_pictures_and_histograms(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    train(make_cfg("epochs=1"), tmp_path)
    logged = tags(tmp_path)
    assert {"test/misclassified", "test/confusion_matrix", "model/first_layer_weights"} <= set(
        logged["images"]
    )
    assert {"layer1/weight", "layer1/weight.grad", "layer2/bias.grad"} <= set(logged["histograms"])


def test_histograms_can_be_switched_off(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    train(make_cfg("epochs=1", "pictures.histograms=false"), tmp_path)
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
