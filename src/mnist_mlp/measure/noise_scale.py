"""The gradient noise scale: how much the examples' desired changes disagree (McCandlish et al.
2018, "An Empirical Model of Large-Batch Training", appendix A).

With G the true gradient and Sigma the covariance of the examples' own gradients g_i, the mean
gradient of a mini-batch of B examples has E|G_B|^2 = |G|^2 + tr(Sigma)/B. Each SGD step measures
it at two batch sizes: B (the step's gradient) and 1 (its examples' own gradients, whose squared
lengths mnist_mlp.training.backprop computes exactly), which gives unbiased estimates of |G|^2 and
tr(Sigma). Their ratio B_simple = tr(Sigma)/|G|^2 is the batch size above which a bigger batch
stops paying: below it the examples disagree so much that averaging more of them nearly halves
the steps each time B doubles.

The ratio of two unbiased estimates is not unbiased, and one step's |G|^2 can even come out
negative, so the two are smoothed separately (moving averages, bias-corrected like Adam's) and
divided only when read.
"""

from __future__ import annotations

import math

import torch

SMOOTHING = 0.95  # per measurement: the moving averages span about the last 20
NAMES = ("noise/grad_sq", "noise/trace_sigma", "noise/b_simple")


def unbiased(
    batch_squared: torch.Tensor, example_squared: torch.Tensor, batch_size: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(|G|^2, tr(Sigma)) estimated from |G_B|^2 of B-example mini-batches and the mean |g_i|^2 of
    their examples (any shape, elementwise; B > 1):

        |G|^2     = (B |G_B|^2 - |g_i|^2) / (B - 1)
        tr(Sigma) = (|g_i|^2 - |G_B|^2) / (1 - 1/B)
    """
    grad_squared = (batch_size * batch_squared - example_squared) / (batch_size - 1)
    trace_sigma = (example_squared - batch_squared) / (1 - 1 / batch_size)
    return grad_squared, trace_sigma


def ratio(grad_squared: float, trace_sigma: float) -> float:
    """B_simple, or nan where |G|^2 is not measurably above 0 (the noise swamps the gradient)."""
    return trace_sigma / grad_squared if grad_squared > 0 else math.nan


class NoiseScale:
    """Each SGD step's two squared norms, kept on the device as they come (no host sync per step),
    turned into smoothed estimates and epoch means when read."""

    def __init__(self) -> None:
        # (|G_B|^2, mean |g_i|^2) on the device, and B, of each step not read yet
        self.pending: list[torch.Tensor] = []
        self.pending_sizes: list[int] = []
        self.average: torch.Tensor | None = None  # moving averages of (|G|^2, tr(Sigma))
        self.weight = 0.0  # 1 - SMOOTHING^steps: the moving averages' bias correction
        self.epoch_total: torch.Tensor | None = None
        self.epoch_steps = 0
        self.epochs: list[dict[str, float]] = []  # each epoch's mean estimates and steps
        self.trace: list[tuple[int, float]] = []  # (SGD step, smoothed B_simple) at each read

    def add(self, gradients: list[torch.Tensor], example_squared: torch.Tensor) -> None:
        """One SGD step: its parameters' gradients and its examples' squared gradient norms."""
        batch_size = len(example_squared)
        if batch_size < 2:  # one example gives no second batch size to compare with
            return
        # |G_B|^2, the squared length of all the gradients as one vector, in few operations
        flat = [gradient.flatten() for gradient in gradients]
        batch_squared = torch.stack([torch.dot(g, g) for g in flat]).sum()
        self.pending.append(torch.stack([batch_squared, example_squared.mean()]))
        self.pending_sizes.append(batch_size)  # kept on the host: no copy to the device per step

    def read(self, step: int) -> dict[str, float]:
        """The smoothed |G|^2, tr(Sigma) and B_simple after the steps added so far, `step` SGD
        steps into training ({} if none)."""
        if self.pending:
            self._smooth()
        if self.average is None:
            return {}
        grad_squared, trace_sigma = (self.average / self.weight).tolist()
        b_simple = ratio(grad_squared, trace_sigma)
        self.trace.append((step, b_simple))
        return dict(zip(NAMES, (grad_squared, trace_sigma, b_simple), strict=True))

    def _smooth(self) -> None:
        """Fold the pending steps into the moving averages and the epoch's totals."""
        batch_squared, example_squared = torch.stack(self.pending).double().unbind(1)
        size = torch.tensor(self.pending_sizes, dtype=torch.float64, device=batch_squared.device)
        self.pending, self.pending_sizes = [], []
        estimates = torch.stack(unbiased(batch_squared, example_squared, size), dim=1)  # k x 2
        count = len(estimates)
        # average_k = s^k average_0 + (1 - s) sum_j s^(k-j) x_j, for all k new steps at once
        decay = SMOOTHING ** torch.arange(count - 1, -1, -1, dtype=torch.float64)
        new = (1 - SMOOTHING) * decay.to(estimates.device) @ estimates
        old = self.average if self.average is not None else torch.zeros_like(new)
        self.average = SMOOTHING**count * old + new
        self.weight = SMOOTHING**count * self.weight + (1 - SMOOTHING) * float(decay.sum())
        total = estimates.sum(0)
        self.epoch_total = total if self.epoch_total is None else self.epoch_total + total
        self.epoch_steps += count

    def end_epoch(self) -> None:
        """Keep this epoch's mean estimates and start the next epoch's."""
        if self.pending:
            self._smooth()
        if self.epoch_steps:
            grad_squared, trace_sigma = (self.epoch_total / self.epoch_steps).tolist()
            values = (grad_squared, trace_sigma, ratio(grad_squared, trace_sigma))
            self.epochs.append(dict(zip(NAMES, values, strict=True)) | {"steps": self.epoch_steps})
        self.epoch_total, self.epoch_steps = None, 0

    def state_dict(self) -> dict:
        """Kept in checkpoints: a resumed run goes on with the same averages (batch_size=auto
        chooses from them) and history."""
        return {
            "average": self.average, "weight": self.weight, "epochs": self.epochs,
            "trace": self.trace,
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.average, self.weight = state.get("average"), state.get("weight", 0.0)
        self.epochs, self.trace = state.get("epochs", []), state.get("trace", [])

    def record(self) -> dict:
        """For metrics.json: each estimate's epoch means, B_simple over the whole run (the ratio
        of the two parts' means over all its steps) and its smoothed trace (None for nan)."""
        steps = [epoch["steps"] for epoch in self.epochs]
        whole = [
            sum(epoch[name] * count for epoch, count in zip(self.epochs, steps, strict=True))
            for name in NAMES[:2]
        ]
        return {
            "noise_by_epoch": {
                name: [_json(epoch[name]) for epoch in self.epochs] for name in NAMES
            },
            "noise_b_simple": _json(ratio(*whole)),
            "noise_trace": [[step, _json(value)] for step, value in self.trace],
        }


def _json(value: float) -> float | None:
    return None if math.isnan(value) else value
