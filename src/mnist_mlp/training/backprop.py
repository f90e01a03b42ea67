"""The notes' backpropagation, written out: the gradient of the batch-mean cost, layer by layer.

Two ways, proven equal to each other and to autograd (tests/test_backprop.py), and autograd's own
with the same signature:

- `backprop_per_example`: the notes' algorithm as they state it, one example at a time, each
  example's desired change of every weight and bias collected, then averaged (model.backprop=
  per_example; a Python loop over the examples, so slow).
- `backprop`: the same numbers for the whole batch at once, each example a row of a matrix
  (model.backprop=manual).
- `by_autograd`: the same numbers derived by autograd from the forward pass (model.backprop=
  autograd, the default).

Notation (docs/backprop.md walks through it from the notes' own sentences): layers l = 1..L,
a^0 = x, z^l = W^l a^(l-1) + b^l, a^l = sigma(z^l) for the hidden layers, z^L = the logits.

    BP1  delta^L = dC_x/dz^L                          each output neuron's error, per example
    BP2  delta^l = (W^(l+1)^T delta^(l+1)) * sigma'(z^l)   handed back through the weights
    BP3  dC_x/db^l = delta^l                          a bias's desired change
    BP4  dC_x/dW^l = delta^l (outer) a^(l-1)          a weight's desired change

`python -m mnist_mlp.training.worked_example` prints every number of one SGD step of a 2-3-2
network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from mnist_mlp.training.costs import batch_cost, one_hot

Activation = Callable[[torch.Tensor], torch.Tensor]
Slope = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Each layer's weight matrix W^l (or bias vector b^l), first layer first: network.py's
# self.weights and self.biases.
Parameters = Sequence[torch.Tensor]


class Gradients(NamedTuple):
    """What a backward pass returns, as Nielsen's backprop returns (nabla_b, nabla_w); the caller
    decides what to do with them."""

    weights: list[torch.Tensor]  # dC/dW of each layer
    biases: list[torch.Tensor]  # dC/db of each layer
    logits: torch.Tensor
    # |each example's own gradient|^2, when asked for (the gradient noise scale)
    example_squared_norms: torch.Tensor | None = None


# sigma'(z), written with a = sigma(z) where that is cheaper. The sigmoid's a (1 - a) is taken as
# a - a * a in one operation: torch dispatches a number minus a tensor (1 - a) through Python.
DERIVATIVES: dict[str, Slope] = {
    "relu": lambda z, a: (z > 0).to(a.dtype),
    "sigmoid": lambda z, a: torch.addcmul(a, a, a, value=-1),
    "tanh": lambda z, a: 1 - a * a,
}


def output_error(
    logits: torch.Tensor, labels: torch.Tensor, loss: str, outputs: str = "softmax"
) -> torch.Tensor:
    """BP1: dC_x/dz^L for each example x (a row each), for the costs of training/costs.py."""
    a = torch.sigmoid(logits) if outputs == "sigmoid" else torch.softmax(logits, dim=1)
    targets = one_hot(labels, a.dtype, a.shape[1])
    if loss == "cross_entropy":
        return a - targets
    if loss == "mse":
        cost_slope = a - targets  # dC_x/da^L for C_x = 1/2 ||a^L - y||^2
        if outputs == "sigmoid":  # each a_j = sigmoid(z_j): da_j/dz_j = a_j (1 - a_j)
            return cost_slope * DERIVATIVES["sigmoid"](logits, a)
        # Through the softmax, da_j/dz_k = a_j (1[j = k] - a_k):
        return a * (cost_slope - (cost_slope * a).sum(dim=1, keepdim=True))
    raise ValueError(f"no output error for loss {loss!r}")


@torch.no_grad()
def backprop_per_example(
    weights: Parameters,
    biases: Parameters,
    sigma: Activation,
    sigma_prime: Slope,
    loss: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    example_norms: bool = False,
    outputs: str = "softmax",
) -> Gradients:
    """The gradient of the batch-mean cost, one example at a time, as the notes say it."""
    weight_changes = [torch.zeros_like(w) for w in weights]
    bias_changes = [torch.zeros_like(b) for b in biases]
    all_logits, example_squares = [], []
    for x, y in zip(images.flatten(1), labels, strict=True):  # each example of the batch
        # Forward: every layer's activations for this example, keeping what the way back needs.
        inputs, slopes, a = [], [], x
        for w, b in zip(weights[:-1], biases[:-1], strict=True):
            inputs.append(a)
            z = w @ a + b
            a = sigma(z)
            slopes.append(sigma_prime(z, a))
        inputs.append(a)
        logits = weights[-1] @ a + biases[-1]
        all_logits.append(logits)
        # Backward: each output neuron's error, compared with its expected output (BP1)...
        delta = output_error(logits[None], y[None], loss, outputs)[0]
        squared_norm = 0
        for index in reversed(range(len(weights))):
            # ...each weight's desired change: for each neuron(l), for each neuron(l-1) feeding
            # it, the neuron's error times that neuron(l-1)'s activation (BP4): an outer product.
            weight_changes[index] += torch.outer(delta, inputs[index])
            bias_changes[index] += delta  # BP3
            squared_norm += delta.square().sum() * (inputs[index].square().sum() + 1)
            if index > 0:  # ...and the same on the previous layer (BP2)
                delta = (weights[index].T @ delta) * slopes[index - 1]
        example_squares.append(squared_norm)
    # Average every example's desired change.
    count = len(labels)
    return Gradients(
        [change / count for change in weight_changes],
        [change / count for change in bias_changes],
        torch.stack(all_logits),
        torch.stack(example_squares) if example_norms else None,
    )


@torch.no_grad()
def backprop(
    weights: Parameters,
    biases: Parameters,
    sigma: Activation,
    sigma_prime: Slope,
    loss: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    example_norms: bool = False,
    outputs: str = "softmax",
) -> Gradients:
    """The gradient of the batch-mean cost, the whole batch at once (one matrix product each)."""
    # Forward: each layer's input a^(l-1) and sigma'(z^l), every example (a row) at once.
    inputs, slopes, a = [], [], images.flatten(1)
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        inputs.append(a)
        z = F.linear(a, w, b)  # a W^T + b
        a = sigma(z)
        slopes.append(sigma_prime(z, a))
    inputs.append(a)
    logits = F.linear(a, weights[-1], biases[-1])
    # Backward, from BP1; the batch average is folded into delta^L, so BP3 and BP4 become sums.
    delta = output_error(logits, labels, loss, outputs) / labels.shape[0]
    deltas = [delta]
    for w, slope in zip(weights[:0:-1], slopes[::-1], strict=True):
        delta = (delta @ w) * slope  # BP2: W^T delta, for every row
        deltas.insert(0, delta)
    weight_grads = [delta.T @ a for delta, a in zip(deltas, inputs, strict=True)]  # BP4
    bias_grads = [delta.sum(dim=0) for delta in deltas]  # BP3
    squared = squared_norms(deltas, inputs) * labels.shape[0] ** 2 if example_norms else None
    return Gradients(weight_grads, bias_grads, logits, squared)


def by_autograd(
    weights: Parameters,
    biases: Parameters,
    sigma: Activation,
    sigma_prime: Slope,
    loss: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    example_norms: bool = False,
    outputs: str = "softmax",
) -> Gradients:
    """The same gradient, derived by autograd from the forward pass (sigma_prime is not needed);
    with example_norms also each layer's delta, autograd's gradient of the cost at z^l."""
    inputs, weighted, a = [], [], images.flatten(1)
    last = len(weights) - 1
    with torch.enable_grad():
        for index, (w, b) in enumerate(zip(weights, biases, strict=True)):
            inputs.append(a)
            weighted.append(F.linear(a, w, b))
            a = weighted[-1] if index == last else sigma(weighted[-1])
        parameters = [*weights, *biases]
        wanted = parameters + weighted if example_norms else parameters
        found = torch.autograd.grad(batch_cost(loss, outputs)(a, labels), wanted)
    squared = None
    if example_norms:  # each delta here is delta_i / B: the cost is the batch mean
        with torch.no_grad():
            squared = squared_norms(list(found[len(parameters) :]), inputs) * len(labels) ** 2
    count = len(weights)
    return Gradients(list(found[:count]), list(found[count : 2 * count]), a.detach(), squared)


def squared_norms(deltas: list[torch.Tensor], inputs: list[torch.Tensor]) -> torch.Tensor:
    """|each example's own gradient|^2, from each layer's error signals and inputs (a row each).

    For a layer, example i's desired changes are delta_i (outer) a_i and delta_i, whose squared
    length is |delta_i|^2 (|a_i|^2 + 1): no per-example gradient is ever built.
    """
    total = None
    for delta, a in zip(deltas, inputs, strict=True):
        delta_squared = torch.linalg.vecdot(delta, delta)  # few operations: each one is a cost
        layer = torch.addcmul(delta_squared, delta_squared, torch.linalg.vecdot(a, a))
        total = layer if total is None else total + layer
    return total


@torch.no_grad()
def example_gradient_norms(
    weights: Parameters,
    biases: Parameters,
    sigma: Activation,
    sigma_prime: Slope,
    loss: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    outputs: str = "softmax",
) -> torch.Tensor:
    """The length of each example's own gradient (its desired change of every parameter)."""
    gradients = backprop(weights, biases, sigma, sigma_prime, loss, images, labels, True, outputs)
    return gradients.example_squared_norms.sqrt()
