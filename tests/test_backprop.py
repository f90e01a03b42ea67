"""The written-out backward pass gives autograd's gradients, steps and scores."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from mnist_mlp.backprop import DERIVATIVES, backprop
from mnist_mlp.model import ACTIVATIONS, LOSSES, MLP
from mnist_mlp.train import train
from tests.conftest import settings

SHAPES = [[], [7], [12, 5], [9, 6, 4]]
GRID = list(itertools.product(DERIVATIVES, LOSSES, SHAPES, [1, 5, 33]))


def mlp(hidden_sizes: list[int], activation: str, loss: str, **sgd) -> MLP:
    chosen = dict(hidden_sizes=hidden_sizes, activation=activation, loss=loss) | sgd
    base = ("lr=0.5", "model.lr_schedule=constant", "model.backprop=manual")
    return MLP(**settings("model", *base, **chosen)).double()


def batch(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 28, 28, generator=generator, dtype=torch.float64)
    return images, torch.randint(0, 10, (size,), generator=generator)


def manual_gradients(model: MLP, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    slope = DERIVATIVES[model.hparams.activation]
    backprop(model.layers, model.activation, slope, model.hparams.loss, images, labels)
    return [parameter.grad.clone() for parameter in model.parameters()]


def autograd_gradients(
    model: MLP, images: torch.Tensor, labels: torch.Tensor
) -> list[torch.Tensor]:
    model.zero_grad()
    model.loss_fn(model(images), labels).backward()
    return [parameter.grad.clone() for parameter in model.parameters()]


@pytest.mark.parametrize(("activation", "loss", "hidden_sizes", "batch_size"), GRID)
def test_manual_gradients_equal_autograd(
    activation: str, loss: str, hidden_sizes: list[int], batch_size: int
) -> None:
    torch.manual_seed(len(hidden_sizes) * 100 + batch_size)
    model = mlp(hidden_sizes, activation, loss)
    images, labels = batch(batch_size, seed=batch_size)
    expected = autograd_gradients(model, images, labels)
    for got, want in zip(manual_gradients(model, images, labels), expected, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_sgd_steps_are_the_same_in_both_modes(loss: str) -> None:
    torch.manual_seed(0)
    sgd = dict(momentum=0.9, nesterov=True, weight_decay=1e-3)
    manual = mlp([16, 8], "sigmoid", loss, **sgd)
    autograd = mlp([16, 8], "sigmoid", loss, **sgd)
    autograd.load_state_dict(manual.state_dict())
    initial = manual.layers[0].weight.clone()
    optimizers = [model.configure_optimizers()["optimizer"] for model in (manual, autograd)]
    for step in range(4):
        images, labels = batch(10, seed=step)
        for optimizer in optimizers:
            optimizer.zero_grad()
        manual_gradients(manual, images, labels)
        autograd_gradients(autograd, images, labels)
        for optimizer in optimizers:
            optimizer.step()
    for got, want in zip(manual.parameters(), autograd.parameters(), strict=True):
        torch.testing.assert_close(got, want)
    assert not torch.equal(manual.layers[0].weight, initial)  # the steps did move the weights


def test_both_modes_reach_the_same_accuracy(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    autograd = train(make_cfg("model.backprop=autograd"), tmp_path / "autograd")
    manual = train(make_cfg("model.backprop=manual"), tmp_path / "manual")
    assert manual["model.backprop"] == "manual"
    assert manual["test/acc"] > 0.5
    assert abs(manual["test/acc"] - autograd["test/acc"]) <= 0.003


def test_unknown_backprop_mode_is_refused(make_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigCompositionException) as caught:
        make_cfg("model.backprop=numeric")
    assert "Invalid value 'numeric', expected one of [autograd, manual]" in str(
        caught.value.__cause__
    )


def test_every_activation_has_a_derivative_for_manual_mode() -> None:
    assert set(DERIVATIVES) == set(ACTIVATIONS)  # so no activation is refused in manual mode
