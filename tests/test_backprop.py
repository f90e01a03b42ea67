"""The written-out backward pass gives autograd's gradients, steps and scores."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from mnist_mlp.run.fit import fit_and_test
from mnist_mlp.training import worked_example
from mnist_mlp.training.backprop import (
    DERIVATIVES,
    backprop,
    backprop_per_example,
    example_gradient_norms,
)
from mnist_mlp.training.model import ACTIVATIONS, MLP
from tests.conftest import ROOT, settings

SHAPES = [[], [7], [12, 5], [9, 6, 4]]
# Each cost: the loss and the output neurons it is taken of ("mse:sigmoid" is Nielsen's).
COSTS = ["cross_entropy:softmax", "mse:softmax", "mse:sigmoid"]
GRID = list(itertools.product(DERIVATIVES, COSTS, SHAPES, [1, 5, 33]))


def mlp(hidden_sizes: list[int], activation: str, cost: str, **sgd) -> MLP:
    loss, outputs = cost.split(":")
    chosen = dict(hidden_sizes=hidden_sizes, activation=activation, loss=loss, outputs=outputs)
    chosen |= sgd
    base = ("lr=0.5", "model.lr_schedule=constant", "model.backprop=manual")
    return MLP(**settings("model", *base, **chosen)).double()


def batch(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 28, 28, generator=generator, dtype=torch.float64)
    return images, torch.randint(0, 10, (size,), generator=generator)


def written_out_gradients(
    model: MLP, images: torch.Tensor, labels: torch.Tensor, backward=backprop
) -> list[torch.Tensor]:
    """The gradients a written-out pass returns, in the order of model.parameters()."""
    slope = DERIVATIVES[model.hparams.activation]
    hp = model.hparams
    weights, biases, logits, _ = backward(
        model.weights, model.biases, model.activation, slope, hp.loss, images, labels, False,
        hp.outputs,
    )  # fmt: skip
    torch.testing.assert_close(logits, model(images))
    return [grad for pair in zip(weights, biases, strict=True) for grad in pair]


def manual_gradients(model: MLP, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """As model.backprop=manual applies them: written into .grad."""
    model.zero_grad()
    model.gradient(images, labels, example_norms=False)
    return [parameter.grad.clone() for parameter in model.parameters()]


def autograd_gradients(
    model: MLP, images: torch.Tensor, labels: torch.Tensor
) -> list[torch.Tensor]:
    model.zero_grad()
    model.cost(model(images), labels).backward()
    return [parameter.grad.clone() for parameter in model.parameters()]


@pytest.mark.parametrize(("activation", "cost", "hidden_sizes", "batch_size"), GRID)
def test_written_out_gradients_equal_autograd(
    activation: str, cost: str, hidden_sizes: list[int], batch_size: int
) -> None:
    torch.manual_seed(len(hidden_sizes) * 100 + batch_size)
    model = mlp(hidden_sizes, activation, cost)
    images, labels = batch(batch_size, seed=batch_size)
    expected = autograd_gradients(model, images, labels)
    # The ladder: the notes' loop over examples = the batch as matrices = autograd.
    per_example = written_out_gradients(model, images, labels, backprop_per_example)
    as_matrices = written_out_gradients(model, images, labels, backprop)
    for one, batched, want in zip(per_example, as_matrices, expected, strict=True):
        torch.testing.assert_close(one, batched)
        torch.testing.assert_close(batched, want)


@pytest.mark.parametrize(("activation", "cost"), list(itertools.product(DERIVATIVES, COSTS)))
def test_example_gradient_norms_are_those_of_each_examples_own_gradient(
    activation: str, cost: str
) -> None:
    torch.manual_seed(1)
    model = mlp([12, 5], activation, cost)
    loss, outputs = cost.split(":")
    images, labels = batch(7, seed=3)
    own = [
        torch.cat(
            [g.flatten() for g in autograd_gradients(model, images[i : i + 1], labels[i : i + 1])]
        )
        for i in range(7)
    ]
    slope = DERIVATIVES[activation]
    norms = example_gradient_norms(
        model.weights, model.biases, model.activation, slope, loss, images, labels, outputs
    )
    torch.testing.assert_close(norms, torch.stack(own).norm(dim=1))


@pytest.mark.parametrize("cost", COSTS)
def test_sgd_steps_are_the_same_in_both_modes(cost: str) -> None:
    torch.manual_seed(0)
    sgd = dict(momentum=0.9, nesterov=True, weight_decay=1e-3)
    manual = mlp([16, 8], "sigmoid", cost, **sgd)
    autograd = mlp([16, 8], "sigmoid", cost, **sgd)
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


def test_the_three_modes_train_to_the_same_accuracy(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    autograd = fit_and_test(make_cfg("model.backprop=autograd"), tmp_path / "autograd")
    for mode in ("manual", "per_example"):
        written_out = fit_and_test(make_cfg(f"model.backprop={mode}"), tmp_path / mode)
        assert written_out["model.backprop"] == mode
        assert written_out["test/acc"] > 0.5
        assert abs(written_out["test/acc"] - autograd["test/acc"]) <= 0.003


def test_unknown_backprop_mode_is_refused(make_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigCompositionException) as caught:
        make_cfg("model.backprop=numeric")
    assert "Invalid value 'numeric', expected one of [autograd, manual, per_example]" in str(
        caught.value.__cause__
    )


def test_every_activation_has_a_derivative_for_manual_mode() -> None:
    assert set(DERIVATIVES) == set(ACTIVATIONS)  # so no activation is refused in manual mode


def test_the_worked_example_in_the_docs_is_what_the_command_prints(
    capsys: pytest.CaptureFixture,
) -> None:
    worked_example.main()
    printed = capsys.readouterr().out
    assert printed.count(" yes") == 3  # per example = as matrices = autograd
    assert printed.strip() in (ROOT / "docs" / "backprop.md").read_text()


def test_the_listed_weights_stay_the_layers_own_through_a_move() -> None:
    # The backward passes read model.weights and model.biases, listed once when the model is
    # built; a move to another dtype (or device) must change their data, not the objects.
    model = mlp([7], "sigmoid", "mse:sigmoid").to(torch.float32)
    for weight, bias, layer in zip(model.weights, model.biases, model.layers, strict=True):
        assert weight is layer.weight and bias is layer.bias
        assert weight.dtype == torch.float32
