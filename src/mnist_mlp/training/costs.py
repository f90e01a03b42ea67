"""The costs a run can minimise, of each example and of a batch, from the network's logits.

cross_entropy   C_x = -log softmax(z)[label]
mse             C_x = 1/2 ||y - a||^2, a = softmax(z) or sigmoid(z) (model.outputs), y one-hot:
                Nielsen's quadratic cost, whose batch mean is his C = 1/(2n) sum_x ||y - a||^2
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mnist_mlp.config.schema import Loss, Outputs

CLASSES = 10
Cost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> cost(s)
OUTPUTS = {Outputs.softmax: lambda z: torch.softmax(z, dim=1), Outputs.sigmoid: torch.sigmoid}


@functools.cache
def identity(classes: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The classes x classes identity matrix, made once per size, dtype and device."""
    return torch.eye(classes, dtype=dtype, device=device)


def one_hot(labels: torch.Tensor, dtype: torch.dtype, classes: int = CLASSES) -> torch.Tensor:
    """y(x), a row each: the identity's rows, gathered in one operation (F.one_hot checks the
    labels' range first, which costs more than a small network's step, and cannot run under
    torch.func.vmap: tests/test_noise.py)."""
    return identity(classes, dtype, labels.device).index_select(0, labels)


def squared_errors(outputs: str) -> Cost:
    """Each example's 1/2 ||y(x) - a(x)||^2, with these output activations."""
    activation = OUTPUTS[outputs]

    def cost(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        a = activation(logits)
        return (a - one_hot(labels, a.dtype)).pow(2).sum(dim=1) / 2

    return cost


def cross_entropies(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each example's cross-entropy, -log softmax(logits)[label]: F.cross_entropy's values with
    reduction="none", which is slower on a CPU over ten classes (benchmarks/step_cost.py)."""
    return torch.logsumexp(logits, dim=1) - logits.gather(1, labels[:, None]).squeeze(1)


def example_cost(loss: str, outputs: str) -> Cost:
    """Each example's cost C_x."""
    return cross_entropies if loss == Loss.cross_entropy else squared_errors(outputs)


def batch_cost(loss: str, outputs: str) -> Cost:
    """The batch mean of C_x: the cost a mini-batch's gradient is taken of."""
    if loss == Loss.cross_entropy:
        return F.cross_entropy
    per_example = squared_errors(outputs)
    return lambda logits, labels: per_example(logits, labels).mean()
