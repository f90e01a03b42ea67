"""One SGD step of a 2-3-2 network, every number printed in the order of the study notes.

    python -m mnist_mlp.training.worked_example

Two examples, sigmoid neurons throughout and Nielsen's quadratic cost C_x = 1/2 ||a - y||^2
(loss=mse model.outputs=sigmoid, as experiment=notes). Small enough to check each number by hand;
docs/backprop.md walks through the output. At the end the same gradient comes from
backprop_per_example, from backprop (the batch as matrices) and from autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from mnist_mlp.training.backprop import DERIVATIVES, backprop, backprop_per_example, output_error

LR = 0.5
EXAMPLES = torch.tensor([[1.0, 0.5], [0.2, 0.9]], dtype=torch.float64)
LABELS = torch.tensor([0, 1])


def network() -> nn.ModuleList:
    """2 inputs -> 3 sigmoid neurons -> 2 outputs, with round weights."""
    hidden, output = nn.Linear(2, 3).double(), nn.Linear(3, 2).double()
    with torch.no_grad():
        hidden.weight.copy_(torch.tensor([[0.1, 0.4], [-0.3, 0.2], [0.5, -0.1]]))
        hidden.bias.copy_(torch.tensor([0.0, 0.1, -0.2]))
        output.weight.copy_(torch.tensor([[0.3, -0.2, 0.4], [-0.1, 0.5, 0.2]]))
        output.bias.copy_(torch.tensor([0.05, -0.05]))
    return nn.ModuleList([hidden, output])


def text(values: torch.Tensor) -> str:
    if values.dim() == 2:
        return "[" + ", ".join(text(row) for row in values) + "]"
    return "[" + ", ".join(f"{value:+.4f}" for value in values.tolist()) + "]"


@torch.no_grad()
def step_by_step(layers: nn.ModuleList) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Print each example's forward and backward pass; return the averaged changes."""
    hidden, output = layers
    weight_changes = [torch.zeros_like(layer.weight) for layer in layers]
    bias_changes = [torch.zeros_like(layer.bias) for layer in layers]
    for number, (x, label) in enumerate(zip(EXAMPLES, LABELS, strict=True), start=1):
        y = torch.nn.functional.one_hot(label, 2).double()
        print(
            f"\nExample {number}: x = {text(x)}, class {int(label)}, expected output y = {text(y)}"
        )
        z1 = hidden.weight @ x + hidden.bias
        a1 = torch.sigmoid(z1)
        z2 = output.weight @ a1 + output.bias
        a2 = torch.sigmoid(z2)
        print(f"  hidden  z1 = W1 x + b1 = {text(z1)}   a1 = sigmoid(z1) = {text(a1)}")
        print(f"  output  z2 = W2 a1 + b2 = {text(z2)}   a2 = sigmoid(z2) = {text(a2)}")
        print(f"  cost    1/2 ||a2 - y||^2 = {float((a2 - y).square().sum() / 2):.4f}")
        delta2 = output_error(z2[None], label[None], "mse", "sigmoid")[0]
        print(
            f"  BP1  each output neuron's error, delta2 = (a2 - y) * a2 (1 - a2) = {text(delta2)}"
        )
        print("  BP4  each output weight's desired change, delta2[j] * a1[k]:")
        print(f"       {text(torch.outer(delta2, a1))}")
        print(f"  BP3  each output bias's desired change, delta2 = {text(delta2)}")
        delta1 = (output.weight.T @ delta2) * DERIVATIVES["sigmoid"](z1, a1)
        print(f"  BP2  the hidden errors, delta1 = (W2^T delta2) * a1 (1 - a1) = {text(delta1)}")
        print("  BP4  each hidden weight's desired change, delta1[j] * x[k]:")
        print(f"       {text(torch.outer(delta1, x))}")
        print(f"  BP3  each hidden bias's desired change, delta1 = {text(delta1)}")
        for index, (delta, a) in enumerate(((delta1, x), (delta2, a1))):
            weight_changes[index] += torch.outer(delta, a)
            bias_changes[index] += delta
    count = len(LABELS)
    return [w / count for w in weight_changes], [b / count for b in bias_changes]


def main() -> None:
    layers = network()
    print(f"A 2-3-2 network of sigmoid neurons, cost 1/2 ||a - y||^2, lr = {LR}")
    print(f"  W1 = {text(layers[0].weight.detach())}   b1 = {text(layers[0].bias.detach())}")
    print(f"  W2 = {text(layers[1].weight.detach())}   b2 = {text(layers[1].bias.detach())}")
    weight_grads, bias_grads = step_by_step(layers)
    print("\nThe average of the two examples' desired changes: the gradient of the cost")
    for number, (weight_grad, bias_grad) in enumerate(
        zip(weight_grads, bias_grads, strict=True), start=1
    ):
        print(f"  dC/dW{number} = {text(weight_grad)}   dC/db{number} = {text(bias_grad)}")
    print(f"\nThe SGD step, parameter - lr * gradient (lr = {LR}):")
    for number, (layer, weight_grad, bias_grad) in enumerate(
        zip(layers, weight_grads, bias_grads, strict=True), start=1
    ):
        weight = layer.weight.detach() - LR * weight_grad
        bias = layer.bias.detach() - LR * bias_grad
        print(f"  W{number} = {text(weight)}   b{number} = {text(bias)}")

    sigmoid, slope = torch.sigmoid, DERIVATIVES["sigmoid"]
    weights, biases = [layer.weight for layer in layers], [layer.bias for layer in layers]
    ours = [*weight_grads, *bias_grads]
    outputs = sigmoid(layers[1](sigmoid(layers[0](EXAMPLES))))
    targets = torch.nn.functional.one_hot(LABELS, 2)
    ((outputs - targets).square().sum(dim=1) / 2).mean().backward()  # loss=mse, by autograd
    others = {
        "backprop_per_example": backprop_per_example(
            weights, biases, sigmoid, slope, "mse", EXAMPLES, LABELS, outputs="sigmoid"
        ),
        "backprop": backprop(
            weights, biases, sigmoid, slope, "mse", EXAMPLES, LABELS, outputs="sigmoid"
        ),
        "autograd": (
            [layer.weight.grad for layer in layers],
            [layer.bias.grad for layer in layers],
        ),
    }
    print("\nThe same gradient, to 1e-12:")
    for name, (weight_grads, bias_grads, *_) in others.items():
        theirs = [*weight_grads, *bias_grads]
        same = all(torch.allclose(a, b, atol=1e-12) for a, b in zip(ours, theirs, strict=True))
        print(f"  {name:<22} {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
