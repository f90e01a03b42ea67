"""A default run's TensorBoard holds the pictures: misclassified digits, confusion, weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
