"""The seed's backpropagation, written out: the gradient of the batch-mean cost, layer by layer.

Notation (docs/backprop.md walks through it beside the seed's steps): layers l = 1..L,
a^0 = x, z^l = a^(l-1) W^l^T + b^l, a^l = sigma(z^l) for the hidden layers, z^L = the logits.
Each row of a matrix below is one example of the batch, so every step is one matrix product.

    BP1  delta^L = dC_x/dz^L                          the output error, per example
    BP2  delta^l = (delta^(l+1) W^(l+1)) * sigma'(z^l)   handed back through the transposed weights
    BP3  dC/db^l = mean over the batch of delta^l
    BP4  dC/dW^l = mean over the batch of delta^l (outer) a^(l-1)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# sigma'(z), written with a = sigma(z) where that is cheaper.
DERIVATIVES = {
    "relu": lambda z, a: (z > 0).to(a.dtype),
    "sigmoid": lambda z, a: a * (1 - a),
    "tanh": lambda z, a: 1 - a * a,
}


def output_error(logits: torch.Tensor, labels: torch.Tensor, loss: str) -> torch.Tensor:
    """BP1: dC_x/dz^L for each example x, for the costs of mnist_mlp.model."""
    outputs = torch.softmax(logits, dim=1)
    targets = F.one_hot(labels, logits.shape[1]).to(outputs.dtype)
    if loss == "cross_entropy":
        return outputs - targets
    if loss == "mse":
        cost_slope = 2 * (outputs - targets)  # dC_x/da^L for C_x = ||a^L - y||^2
        # Through the softmax, da_j/dz_k = a_j (1[j = k] - a_k):
        return outputs * (cost_slope - (cost_slope * outputs).sum(dim=1, keepdim=True))
    raise ValueError(f"no output error for loss {loss!r}")


@torch.no_grad()
def backprop(
    layers: nn.ModuleList,
    sigma: Callable[[torch.Tensor], torch.Tensor],
    sigma_prime: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    loss: str,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """Write dC/dW and dC/db of the batch-mean cost into each layer's .grad; return the logits."""
    # Forward, keeping what the backward pass needs: each layer's input a^(l-1) and sigma'(z^l).
    inputs, slopes = [], []
    a = images.flatten(1)
    for layer in layers[:-1]:
        inputs.append(a)
        z = layer(a)
        a = sigma(z)
        slopes.append(sigma_prime(z, a))
    inputs.append(a)
    logits = layers[-1](a)

    # The batch average is folded into delta once, so BP3 and BP4 become plain sums.
    delta = output_error(logits, labels, loss) / len(labels)
    for index in reversed(range(len(layers))):
        layer = layers[index]
        layer.weight.grad = delta.T @ inputs[index]  # BP4
        layer.bias.grad = delta.sum(dim=0)  # BP3
        if index > 0:
            delta = (delta @ layer.weight) * slopes[index - 1]  # BP2
    return logits
