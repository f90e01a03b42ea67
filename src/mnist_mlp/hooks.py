"""Lightning's hooks around each SGD step, called only when something listens to them.

Every SGD step here is a step of Lightning's optimizer, so that trainer.global_step counts SGD
steps. Around each one, Lightning's full-precision plugin calls every callback's and the
module's on_before_backward, on_after_backward and on_before_optimizer_step, each inside a
profiler context: a fixed cost per step larger than the whole step of a small network
(benchmarks/step_overhead.py). When no callback and not the module overrides a hook, and no
profiler times them, those calls do nothing, so skipping them changes nothing but the time.
Whenever something does listen, Lightning's own plugin runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler


def listened(trainer: Trainer, hook: str) -> bool:
    """Whether a callback or the module overrides this hook, or a profiler times the hooks."""
    if not isinstance(trainer.profiler, PassThroughProfiler):
        return True
    default = getattr(Callback, hook)
    if any(getattr(type(callback), hook) is not default for callback in trainer.callbacks):
        return True
    return getattr(type(trainer.lightning_module), hook) is not getattr(LightningModule, hook)


class QuietPrecision(Precision):
    """Lightning's full-precision plugin, skipping the per-step hooks that nothing listens to."""

    def pre_backward(self, tensor: torch.Tensor, module: LightningModule) -> torch.Tensor:
        if listened(module.trainer, "on_before_backward"):
            return super().pre_backward(tensor, module)
        return tensor

    def post_backward(self, tensor: torch.Tensor, module: LightningModule) -> torch.Tensor:
        if listened(module.trainer, "on_after_backward"):
            return super().post_backward(tensor, module)
        return tensor.detach()  # as Lightning's: the graph is released

    def optimizer_step(
        self,
        optimizer: torch.optim.Optimizer,
        model: LightningModule,
        closure: Callable[[], Any],
        **kwargs: Any,
    ) -> Any:
        # SGD evaluates the closure once, before its update, so the closure may run first here
        # (an optimizer that evaluates it several times, like L-BFGS, gets Lightning's path).
        quiet = type(optimizer) is torch.optim.SGD and not listened(
            model.trainer, "on_before_optimizer_step"
        )
        if not quiet:
            return super().optimizer_step(optimizer, model, closure, **kwargs)
        with torch.enable_grad():
            result = closure()
        optimizer.step(**kwargs)
        return result


def quieten(trainer: Trainer) -> None:
    """Use QuietPrecision where Lightning chose its plain full-precision plugin (other
    precisions, and other accelerators' plugins, stay Lightning's)."""
    if type(trainer.precision_plugin) is Precision:
        trainer.strategy.precision_plugin = QuietPrecision()
