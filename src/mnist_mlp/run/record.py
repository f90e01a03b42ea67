"""metrics.json: how a run ended, what it scored, with which settings, in how long."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from lightning import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from mnist_mlp.config.settings import hyperparameters
from mnist_mlp.measure.steps_to_target import StepsToTarget
from mnist_mlp.run import hparams_tab
from mnist_mlp.training.auto_batch import AutoBatchSize

# What each run is judged by in metrics.json: the best checkpoint's (by val/acc) scores.
SCORES = ("val/acc", "val/loss", "test/acc", "test/loss")
BEST = "best_checkpoint"


def write_metrics(
    run_dir: Path,
    cfg: DictConfig,
    status: str,
    scores: dict,
    start: float,
    trainer: Trainer | None = None,
) -> dict:
    """metrics.json: status (ok, diverged, interrupted, failed), scores, settings, wall seconds;
    the noise scale's epoch means, the steps to study.target and the batch sizes batch_size=auto
    chose, when measured."""
    metrics = {"status": status} | {name: scores.get(name) for name in (*SCORES, BEST)}
    # The thread count changes float rounding: part of what reproduces a run exactly.
    metrics |= hyperparameters(cfg) | {
        "epochs_run": trainer.current_epoch if trainer else 0,
        "torch_threads": torch.get_num_threads(),
    }
    metrics["wall_seconds"] = round(time.perf_counter() - start, 2)
    if trainer is not None:
        if trainer.lightning_module.noise.epochs:
            metrics |= trainer.lightning_module.noise.record()
        for callback in trainer.callbacks:
            if isinstance(callback, StepsToTarget | AutoBatchSize):
                metrics |= callback.record()
    if rank_zero_only.rank == 0:  # with DDP, the first process writes the run's files
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        hparams_tab.end(run_dir, hyperparameters(cfg), status)
    return metrics


def best_entry(trainer: Trainer, run_dir: Path) -> dict[str, str]:
    """{BEST: the best checkpoint by val/acc, relative to the run dir}, or {} before the first.

    A run resumed after its folder was moved or copied still holds the old folder's path: the
    file of that name in this run dir's checkpoints/ is the one (Lightning keeps the path)."""
    saving_best = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    if not (saving_best and saving_best[0].best_model_path):
        return {}
    here, best = run_dir.resolve(), Path(saving_best[0].best_model_path).resolve()
    if not best.is_relative_to(here):
        best = here / "checkpoints" / best.name
        if not best.is_file():
            return {}
    return {BEST: str(best.relative_to(here))}
