"""The gradient noise scale: exact per-example norms, unbiased estimates, logged in every run."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.func import functional_call, grad, vmap

from mnist_mlp.measure.noise_scale import NAMES, NoiseScale, unbiased
from mnist_mlp.run.fit import fit_and_test
from mnist_mlp.training.backprop import DERIVATIVES
from mnist_mlp.training.model import MLP
from tests.conftest import settings


def own_gradient_norms(model: MLP, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """|each example's own gradient|^2 by torch.func: autograd's gradient, per example."""
    parameters = {name: p.detach() for name, p in model.named_parameters()}

    def cost(params: dict, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, params, (image[None],))
        return model.cost(logits, label[None])

    gradients = vmap(grad(cost), in_dims=(None, 0, 0))(parameters, images, labels)
    return sum(g.flatten(1).square().sum(dim=1) for g in gradients.values())


COSTS = ["cross_entropy:softmax", "mse:softmax", "mse:sigmoid"]  # loss:outputs


@pytest.mark.parametrize(
    ("backprop", "activation", "cost"),
    list(itertools.product(["autograd", "manual", "per_example"], DERIVATIVES, COSTS)),
)
def test_example_norms_equal_those_of_per_example_autograd_gradients(
    backprop: str, activation: str, cost: str
) -> None:
    torch.manual_seed(len(activation) + len(cost))
    loss, outputs = cost.split(":")
    chosen = dict(hidden_sizes=[13, 6], activation=activation, loss=loss, backprop=backprop)
    chosen |= dict(outputs=outputs)
    model = MLP(**settings("model", **chosen)).double()
    generator = torch.Generator().manual_seed(5)
    images = torch.randn(9, 28, 28, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (9,), generator=generator)
    _, squared = model.gradient(images, labels, example_norms=True)
    assert not squared.requires_grad  # kept for later reads: no autograd graph kept with it
    torch.testing.assert_close(squared, own_gradient_norms(model, images, labels))


def test_the_estimates_are_unbiased_for_a_known_gradient_and_covariance() -> None:
    """Examples' gradients g_i = G + noise of covariance Sigma: the estimates average to |G|^2
    and tr(Sigma) at any batch size, while a single step's ratio is biased."""
    generator = torch.Generator().manual_seed(0)
    dimension, trials = 50, 40_000
    true_gradient = torch.randn(dimension, generator=generator, dtype=torch.float64) * 0.2
    spread = torch.rand(dimension, generator=generator, dtype=torch.float64) * 2  # Sigma's diag
    want = (true_gradient.square().sum(), spread.square().sum())  # |G|^2 = 2.0ish, tr = 66ish
    for batch_size in (2, 8, 64):
        noise = torch.randn(trials, batch_size, dimension, generator=generator, dtype=torch.float64)
        examples = true_gradient + noise * spread
        batch_squared = examples.mean(dim=1).square().sum(dim=1)
        example_squared = examples.square().sum(dim=2).mean(dim=1)
        size = torch.full((trials,), float(batch_size), dtype=torch.float64)
        grad_squared, trace_sigma = unbiased(batch_squared, example_squared, size)
        torch.testing.assert_close(grad_squared.mean(), want[0], rtol=0.05, atol=0)
        torch.testing.assert_close(trace_sigma.mean(), want[1], rtol=0.02, atol=0)
        if batch_size == 8:  # averaging the steps' ratios instead is far off
            per_step_ratio = (trace_sigma / grad_squared).mean()
            assert abs(per_step_ratio - want[1] / want[0]) > 0.2 * want[1] / want[0]


def test_the_smoothed_noise_scale_is_the_ratio_of_the_smoothed_parts() -> None:
    """NoiseScale's steps, read in uneven groups, give bias-corrected moving averages whose ratio
    converges on tr(Sigma)/|G|^2; the epoch means are the plain means of the steps."""
    generator = torch.Generator().manual_seed(1)
    true_gradient = torch.full((20,), 0.3, dtype=torch.float64)  # |G|^2 = 1.8
    noise_scale, batch_size = NoiseScale(), 16
    for steps in (1, 7, 300, 2000):
        for _ in range(steps):
            examples = true_gradient + torch.randn(batch_size, 20, generator=generator)
            noise_scale.add([examples.mean(dim=0)], examples.square().sum(dim=1))
        read = noise_scale.read(step=0)
    assert read["noise/b_simple"] == pytest.approx(20 / 1.8, rel=0.1)  # tr(Sigma) = 20
    noise_scale.end_epoch()
    (epoch,) = noise_scale.epochs
    assert epoch["steps"] == 1 + 7 + 300 + 2000
    assert epoch["noise/trace_sigma"] == pytest.approx(20, rel=0.02)
    assert epoch["noise/grad_sq"] == pytest.approx(1.8, rel=0.1)
    # One example per step measures nothing: there is no second batch size.
    noise_scale.add([true_gradient], torch.ones(1))
    assert noise_scale.pending == []
    assert NoiseScale().read(step=0) == {}  # nothing measured yet


def test_every_run_logs_the_noise_scale_beside_train_loss(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    every_5 = ("log_every=5",)
    metrics = fit_and_test(make_cfg(*every_5), tmp_path / "on")
    events = EventAccumulator(str(tmp_path / "on")).Reload()
    loss_steps = [event.step for event in events.Scalars("train/loss")]
    assert loss_steps == [5, 10, 15, 16, 21, 26, 31, 32]  # 16 steps per epoch, 2 epochs
    for name in NAMES:
        assert [event.step for event in events.Scalars(name)] == loss_steps
        assert len(metrics["noise_by_epoch"][name]) == 2
    saved = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert saved["noise_by_epoch"] == metrics["noise_by_epoch"]
    assert all(value > 0 for value in saved["noise_by_epoch"]["noise/trace_sigma"])
    assert [step for step, _ in saved["noise_trace"]] == loss_steps
    assert saved["noise_b_simple"] > 1

    off = fit_and_test(make_cfg(*every_5, "model.noise_scale=false"), tmp_path / "off")
    assert "noise_by_epoch" not in off
    assert {name: off[name] for name in ("val/acc", "test/acc")} == {
        name: metrics[name] for name in ("val/acc", "test/acc")
    }  # measuring changes nothing that is trained
    logged = EventAccumulator(str(tmp_path / "off")).Reload().Tags()["scalars"]
    assert "noise/b_simple" not in logged
