"""The settings as flat keys and plain values: what the checks, metrics.json and TensorBoard's
HParams read of the schema (mnist_mlp.config.schema)."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_mlp.config.schema import AUTO, TrainConfig


def _leaves(schema: type, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """(dotted key, field) of every setting of the schema, nested groups flattened; the copies of
    top-level keys (model.lr is ${lr}) left out."""
    leaves = []
    for item in dataclasses.fields(schema):
        copy = isinstance(item.default, str) and item.default.startswith("${")
        if item.name == "_target_" or copy:
            continue
        nested = item.default_factory if dataclasses.is_dataclass(item.default_factory) else None
        if nested:
            leaves += _leaves(nested, f"{prefix}{item.name}.")
        elif item.name not in ("trainer", "logger"):  # Lightning's arguments, not settings
            leaves.append((f"{prefix}{item.name}", item))
    return leaves


SETTINGS = dict(_leaves(TrainConfig))  # what a user sets: "batch_size", "model.activation", ...


def plain(node: DictConfig) -> dict[str, Any]:
    """A config node as plain Python values (Enums as their names), interpolations resolved."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def plain_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def hyperparameters(cfg: DictConfig) -> dict[str, float | int | str | bool]:
    """What a run trains, as flat scalars (metrics.json, TensorBoard's HParams tab)."""
    values = {}
    for key, item in SETTINGS.items():
        if item.metadata.get("how") or (key.startswith("auto_batch.") and cfg.batch_size != AUTO):
            continue
        value = OmegaConf.select(cfg, key)
        if value is None:  # not set (study.target outside a study)
            continue
        # Lists as text: TensorBoard's HParams takes only numbers, strings and booleans.
        values[key] = str(list(value)) if OmegaConf.is_list(value) else plain_value(value)
    return values
