"""Lightning's hooks around each SGD step, called only when something listens to them.

Every SGD step here is a step of Lightning's optimizer, so that trainer.global_step counts SGD
steps. Around each one, Lightning's full-precision plugin calls every callback's and the
module's on_before_optimizer_step, and LightningModule.manual_backward their on_before_backward
and on_after_backward, each inside a profiler context: a fixed cost per step that is a large part
of the whole step of a small network (benchmarks/step_overhead.py). When no callback and not the
module overrides a hook, and no profiler times them, those calls do nothing, so skipping them
changes nothing but the time. Whenever something does listen, Lightning's own path runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler


def listened(trainer: Trainer, hook: str) -> bool:
    """Whether a callback or the module overrides this hook (in its class, or as an attribute of
    its own, which Lightning would call too), or a profiler times the hooks.

    Lightning's is_overridden asks the same of one object, at several times the cost, and this
    runs on every SGD step.
    """
    if not isinstance(trainer.profiler, PassThroughProfiler):
        return True
    module = trainer.lightning_module
    listeners = [(callback, Callback) for callback in trainer.callbacks] + [
        (module, LightningModule)
    ]
    return any(
        getattr(type(listener), hook) is not getattr(base, hook) or hook in vars(listener)
        for listener, base in listeners
    )


class QuietPrecision(Precision):
    """Lightning's full-precision plugin, calling the on_before_optimizer_step hooks only when
    something listens to them."""

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


def plain_backward(trainer: Trainer) -> bool:
    """Whether LightningModule.manual_backward would only call torch's backward and the backward
    hooks, none listened to: one process (DDP readies its gradient averaging there), Lightning's
    plain full-precision plugin (mixed precision scales the loss there), the module's own
    backward hook not overridden."""
    hooks = ("on_before_backward", "on_after_backward")
    return (
        trainer.world_size == 1
        and isinstance(trainer.precision_plugin, QuietPrecision)
        and type(trainer.lightning_module).backward is LightningModule.backward
        and not any(listened(trainer, hook) for hook in hooks)
    )


def quieten(trainer: Trainer) -> None:
    """Use QuietPrecision where Lightning chose its plain full-precision plugin (other
    precisions, and other accelerators' plugins, stay Lightning's)."""
    if type(trainer.precision_plugin) is Precision:
        trainer.strategy.precision_plugin = QuietPrecision()
