"""The costs a run can minimise, as the batch mean and as each example's own value."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mnist_mlp.config.schema import Loss

CLASSES = 10


def squared_errors(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each example's ||y(x) - a(x)||^2: the squared distance between its output activations (a
    softmax, a distribution over the ten classes like the target) and its one-hot target."""
    outputs = torch.softmax(logits, dim=1)
    # One-hot by comparison (F.one_hot cannot run under torch.func.vmap: tests/test_noise.py).
    targets = (labels[:, None] == torch.arange(CLASSES, device=labels.device)).to(outputs.dtype)
    return (outputs - targets).pow(2).sum(dim=1)


def mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The notes' cost, averaged over the batch: (1/n) sum_x ||y(x) - a(x)||^2."""
    return squared_errors(logits, labels).mean()


def cross_entropies(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each example's cross-entropy, -log softmax(logits)[label]: F.cross_entropy's values with
    reduction="none", which is slower on a CPU over ten classes (benchmarks/step_cost.py)."""
    return torch.logsumexp(logits, dim=1) - logits.gather(1, labels[:, None]).squeeze(1)


BATCH_COSTS = {Loss.cross_entropy: F.cross_entropy, Loss.mse: mse}
EXAMPLE_COSTS = {Loss.cross_entropy: cross_entropies, Loss.mse: squared_errors}
