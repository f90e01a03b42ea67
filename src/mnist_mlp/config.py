"""Settings checked before any work: one sentence naming the key, its value, what is allowed."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig

from mnist_mlp.data import DATASETS
from mnist_mlp.errors import UsageError
from mnist_mlp.model import ACTIVATIONS, LOSSES, LR_SCHEDULES

BACKPROP_MODES = ("autograd", "manual")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise UsageError(f"{key}={value!r} is not allowed: {allowed}.")


def _positive_int(key: str, value: Any) -> None:
    _require(key, value, _is_int(value) and value > 0, "use a positive whole number")


def _number_at_least(key: str, value: Any, low: float, strict: bool) -> None:
    number = (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
    ok = number and (value > low if strict else value >= low)
    _require(key, value, ok, f"use a number {'>' if strict else '>='} {low:g}")


def _boolean(key: str, value: Any) -> None:
    _require(key, value, isinstance(value, bool), "use true or false")


def _one_of(key: str, value: Any, names: Iterable[str]) -> None:
    _require(key, value, value in names, f"use one of {', '.join(names)}")


def check_config(cfg: DictConfig) -> None:
    """Raise UsageError for the first setting a run could not use."""
    model, data = cfg.model, cfg.data
    _positive_int("batch_size", cfg.batch_size)
    _positive_int("epochs", cfg.epochs)
    _number_at_least("lr", cfg.lr, 0, strict=True)
    _require("seed", cfg.seed, _is_int(cfg.seed) and 0 <= cfg.seed < 2**32, "use 0 <= seed < 2**32")
    _one_of("loss", cfg.loss, LOSSES)

    _one_of("data.dataset", data.dataset, DATASETS)
    _boolean("data.download", data.download)
    _positive_int("data.val_size", data.val_size)  # and below the training set: checked on load
    _positive_int("data.eval_batch_size", data.eval_batch_size)
    _positive_int("data.batches_per_step", data.batches_per_step)

    hidden = model.hidden_sizes
    _require(
        "model.hidden_sizes",
        hidden,
        not isinstance(hidden, str | int | float) and all(_is_int(n) and n > 0 for n in hidden),
        "use a list of positive whole numbers, e.g. model.hidden_sizes=[512,256]",
    )
    _one_of("model.activation", model.activation, ACTIVATIONS)
    _number_at_least("model.momentum", model.momentum, 0, strict=False)
    _number_at_least("model.weight_decay", model.weight_decay, 0, strict=False)
    _boolean("model.nesterov", model.nesterov)
    if model.nesterov:
        _require("model.nesterov", True, model.momentum > 0, "it needs model.momentum > 0")
    _one_of("model.lr_schedule", model.lr_schedule, LR_SCHEDULES)
    _one_of("model.backprop", model.backprop, BACKPROP_MODES)
    if model.backprop == "manual":
        strategy = str(cfg.trainer.get("strategy", "auto"))
        _require(
            "model.backprop",
            "manual",
            "ddp" not in strategy,
            f"with trainer.strategy={strategy} the gradients must come from autograd, whose "
            "hooks average them across processes; use model.backprop=autograd",
        )
    _positive_int("model.check_finite_every", model.check_finite_every)
