"""The MLP and its two costs."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from mnist_mlp.config.schema import TrainConfig
from mnist_mlp.config.settings import SETTINGS
from mnist_mlp.training.costs import cross_entropies
from mnist_mlp.training.model import MLP
from tests.conftest import ROOT, settings


def mlp(**overrides) -> MLP:
    return MLP(
        **settings("model", "model.hidden_sizes=[16,8]", "model.activation=tanh", **overrides)
    )


def test_layers_follow_hidden_sizes_and_give_ten_logits() -> None:
    model = mlp()
    assert [tuple(layer.weight.shape) for layer in model.layers] == [(16, 784), (8, 16), (10, 8)]
    assert model(torch.zeros(5, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize("outputs", ["softmax", "sigmoid"])
def test_mse_is_nielsens_quadratic_cost_of_the_outputs(outputs: str) -> None:
    """C = 1/(2n) sum_x ||y(x) - a(x)||^2, a the output neurons' activations."""
    model = mlp(loss="mse", outputs=outputs)
    logits, labels = torch.randn(4, 10), torch.tensor([0, 3, 9, 3])
    a = logits.softmax(1) if outputs == "softmax" else logits.sigmoid()
    targets = F.one_hot(labels, 10).float()
    expected = sum(((targets[i] - a[i]) ** 2).sum() for i in range(4)) / (2 * 4)
    torch.testing.assert_close(model.cost(logits, labels), expected)


def test_normal_init_draws_every_weight_and_bias_from_a_standard_normal() -> None:
    torch.manual_seed(0)
    values = torch.cat([p.flatten() for p in mlp(init="normal", hidden_sizes=[64]).parameters()])
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1) < 0.01


def test_cross_entropy_is_on_logits() -> None:
    logits, labels = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    expected = -logits.log_softmax(1)[torch.arange(4), labels].mean()
    torch.testing.assert_close(mlp().cost(logits, labels), expected)


def test_each_examples_cost_is_the_batch_costs_term() -> None:
    """What train/loss and the divergence check read: F.cross_entropy's values per example, also
    for huge logits, and non-finite where a logit is."""
    logits, labels = torch.randn(6, 10) * 30, torch.tensor([1, 2, 3, 4, 0, 9])
    expected = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(cross_entropies(logits, labels), expected)
    logits[2, 5], logits[4, 0] = float("inf"), float("nan")
    finite = torch.isfinite(cross_entropies(logits, labels))
    assert finite.tolist() == [True, True, False, True, False, True]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_activations(activation: str) -> None:
    model = mlp(activation=activation, hidden_sizes=[4])
    hidden = model.activation(model.layers[0](torch.randn(3, 784)))
    if activation == "relu":
        assert hidden.min() >= 0
    elif activation == "sigmoid":
        assert hidden.min() > 0 and hidden.max() < 1
    else:
        assert hidden.min() > -1 and hidden.max() < 1


def test_sgd_settings_reach_the_optimizer() -> None:
    model = mlp(lr=0.3, momentum=0.9, nesterov=True, weight_decay=1e-4, lr_schedule="constant")
    optimizer = model.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.3,
        0.9,
        True,
        1e-4,
    )


def test_the_configuration_page_lists_every_setting_with_the_schemas_default() -> None:
    readme = (ROOT / "docs" / "configuration.md").read_text()
    rows = dict(re.findall(r"^\| `([\w.]+)` \| ([^|]+) \|", readme, re.MULTILINE))
    schema = OmegaConf.structured(TrainConfig)
    for key in SETTINGS:
        default = OmegaConf.to_container(schema, enum_to_str=True)
        for part in key.split("."):
            default = default[part]
        written = json.dumps(default).replace('"', "") if default is not None else "null"
        assert rows[key].strip().strip("`") == written, key
