"""The checks that types cannot express (ranges, combinations), and what a resume may change."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_mlp.config.schema import AUTO, Backprop
from mnist_mlp.config.settings import SETTINGS, plain_value
from mnist_mlp.errors import UsageError

# A resumed run may run on other devices, or show its progress otherwise; anything else in
# trainer.* would change what is trained.
TRAINER_KEYS_FREE_ON_RESUME = ("accelerator", "devices", "enable_progress_bar")


def resume_differences(saved: DictConfig, cfg: DictConfig) -> list[tuple[str, Any, Any]]:
    """(key, saved value, this run's value) for each setting a resume may not change."""
    differences = []
    for key, item in SETTINGS.items():
        if item.metadata.get("how") or key == "epochs":
            continue
        then, now = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
        if then != now:
            differences.append((key, plain_value(then), plain_value(now)))
    trainer_then, trainer_now = saved.get("trainer") or {}, cfg.get("trainer") or {}
    for key in sorted(set(trainer_then) | set(trainer_now)):
        if key in TRAINER_KEYS_FREE_ON_RESUME or key == "max_epochs":  # max_epochs is epochs
            continue
        then, now = trainer_then.get(key), trainer_now.get(key)
        if then != now:
            differences.append((f"trainer.{key}", then, now))
    return differences


def require_given(cfg: DictConfig, usage: str) -> None:
    """Refuse a config whose mandatory keys (???) were not given, with the command's usage."""
    missing = [key for key in cfg if OmegaConf.is_missing(cfg, key)]
    if missing:
        raise UsageError(f"Give {' and '.join(f'{key}=...' for key in missing)}; usage: {usage}")


def _require(key: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise UsageError(f"{key}={value!r} is not allowed: {allowed}.")


def _positive(key: str, value: int) -> None:
    _require(key, value, value > 0, "use a positive whole number")


# Lightning options with no meaning here.
REFUSED_TRAINER_KEYS = {
    "log_every_n_steps": "train/loss is logged every log_every SGD steps; set that",
    "accumulate_grad_batches": "each mini-batch takes its own SGD step; raise batch_size instead",
}


def check_config(cfg: DictConfig) -> None:
    """Raise UsageError for the first setting a run could not use (types Hydra has checked)."""
    model = cfg.model
    if cfg.batch_size == AUTO:
        check_auto_batch(cfg)
    else:
        size = cfg.batch_size
        whole = isinstance(size, int) and not isinstance(size, bool)
        _require("batch_size", size, whole and size > 0, f"use a positive whole number, or {AUTO}")
    for key in (
        "epochs",
        "data.val_size",
        "data.eval_batch_size",
        "log_every",
        "study.every_examples",
    ):
        _positive(key, OmegaConf.select(cfg, key))
    _require("lr", cfg.lr, math.isfinite(cfg.lr) and cfg.lr > 0, "use a number > 0")
    _require(
        "data.study_target",
        cfg.data.study_target,
        0 < cfg.data.study_target < 1,
        "use 0 < study_target < 1",
    )
    target = cfg.study.target
    _require("study.target", target, target is None or 0 < target <= 1, "use 0 < target <= 1")
    _require("seed", cfg.seed, 0 <= cfg.seed < 2**32, "use 0 <= seed < 2**32")
    hidden = list(model.hidden_sizes)
    _require(
        "model.hidden_sizes",
        hidden,
        all(n > 0 for n in hidden),
        "use a list of positive whole numbers, e.g. model.hidden_sizes=[512,256]",
    )
    for key in ("model.momentum", "model.weight_decay"):
        value = OmegaConf.select(cfg, key)
        _require(key, value, math.isfinite(value) and value >= 0, "use a number >= 0")
    if model.outputs == "sigmoid":
        _require(
            "model.outputs",
            "sigmoid",
            cfg.loss == "mse",
            "cross_entropy is the cost of softmax outputs; use loss=mse with sigmoid outputs",
        )
    if model.nesterov:
        _require("model.nesterov", True, model.momentum > 0, "it needs model.momentum > 0")
    trainer = cfg.trainer
    for key, why in REFUSED_TRAINER_KEYS.items():
        if trainer.get(key, 1) != 1:
            _require(f"trainer.{key}", trainer[key], False, f"remove it: {why}")
    if model.backprop != Backprop.autograd:
        strategy = str(trainer.get("strategy", "auto"))
        _require(
            "model.backprop",
            model.backprop.value,
            "ddp" not in strategy,
            f"with trainer.strategy={strategy} the gradients must come from autograd, whose "
            "hooks average them across processes; use model.backprop=autograd",
        )


def check_auto_batch(cfg: DictConfig) -> None:
    """batch_size=auto's bounds, and what it needs: the noise scale, and one process."""
    auto = cfg.auto_batch
    for key in ("smallest", "largest"):
        value = auto[key]
        _require(
            f"auto_batch.{key}", value, value >= 2 and value & (value - 1) == 0,
            "use a power of two of at least 2 (the noise scale compares two batch sizes)",
        )  # fmt: skip
    _require(
        "auto_batch.largest", auto.largest, auto.largest >= auto.smallest,
        f"use at least auto_batch.smallest={auto.smallest}",
    )  # fmt: skip
    _require(
        "auto_batch.every_examples", auto.every_examples,
        auto.every_examples > 0 and auto.every_examples % auto.largest == 0,
        f"use a multiple of auto_batch.largest={auto.largest}, so that every interval is whole "
        "mini-batches at any batch size",
    )  # fmt: skip
    _require(
        "model.noise_scale", False, cfg.model.noise_scale,
        "batch_size=auto chooses each batch from the measured noise scale; set it to true",
    )  # fmt: skip
    strategy = str(cfg.trainer.get("strategy", "auto"))
    _require(
        "batch_size", AUTO, "ddp" not in strategy,
        f"with trainer.strategy={strategy} the noise scale is not measured (each process sees "
        "only its share of a batch); choose a batch size, e.g. batch_size=256",
    )  # fmt: skip
