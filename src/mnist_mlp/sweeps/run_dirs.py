"""Hydra callbacks: claim each run or sweep folder, never overwrite a finished one; summarise each
sweep as it ends."""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_mlp.config.checks import check_config
from mnist_mlp.config.command_line import last_checkpoint
from mnist_mlp.errors import UsageError
from mnist_mlp.run.folder_lock import claim, release
from mnist_mlp.sweeps.rows import job_rows
from mnist_mlp.sweeps.summary import UNFINISHED, summarise_sweep, unfinished

log = logging.getLogger(__name__)


def _nothing_kept(metrics_file: Path) -> bool:
    """A run that was cancelled or interrupted before its first epoch ended: a new run may take
    its folder (the command a sweep gives for such a job)."""
    status = json.loads(metrics_file.read_text()).get("status")
    return status in UNFINISHED and not last_checkpoint(metrics_file.parent).is_file()


def _refuse_finished(folder: Path, key: str) -> None:
    finished = sorted(folder.glob("metrics.json")) + sorted(folder.glob("*/metrics.json"))
    finished = [metrics_file for metrics_file in finished if not _nothing_kept(metrics_file)]
    if finished:
        raise SystemExit(
            f"{key}={folder} already holds finished runs ({finished[0]}); "
            f"choose a new {key} so nothing of theirs is overwritten."
        )


def _claim_unfinished(folder: Path, key: str) -> None:
    """Before Hydra writes anything into the folder."""
    _refuse_finished(folder, key)
    try:
        claim(folder, key)
    except UsageError as error:
        raise SystemExit(str(error)) from None


def _refuse_local_ddp(config: DictConfig) -> None:
    """A sweep of DDP runs needs a launcher that starts each run's processes itself (Slurm's
    tasks): on this machine Lightning's DDP launcher starts the other processes by replaying the
    command line, so each of them would start the whole sweep again."""
    strategy = str(config.trainer.get("strategy", "auto"))
    launcher = str(config.hydra.launcher.get("_target_", ""))
    cluster = "submitit" in launcher or launcher == "hydra_plugins.mnist_mlp_slurm.SlurmLauncher"
    if "ddp" in strategy and "spawn" not in strategy and not cluster:
        raise SystemExit(
            f"trainer.strategy={strategy} cannot run in a sweep with this launcher: Lightning "
            "would start each extra process by replaying this command line, and each would run "
            "the whole sweep; run the DDP jobs one at a time (without -m), or as Slurm jobs "
            "(hydra/launcher=slurm)."
        )


def _refuse_bad_settings(config: DictConfig) -> None:
    """Before the run's folder exists: a refused setting leaves nothing behind."""
    try:
        check_config(config)
    except UsageError as error:
        raise SystemExit(str(error)) from None


def _refuse_all_failed(sweep_dir: Path) -> None:
    """A sweep none of whose jobs ended ok is a failed command."""
    _, rows = job_rows(sweep_dir)
    if rows and not any(row["status"] == "ok" for row in rows):
        counts = Counter(row["status"] for row in rows)
        raise SystemExit(
            f"No job of the sweep ended ok ({', '.join(f'{n} {s}' for s, n in counts.items())}); "
            f"{sweep_dir}/summary.md and each job's train.log say why."
        )


class RunDirs(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_bad_settings(config)
        if config.ckpt_path is None:  # a resumed run continues in its own run dir (run/task.py)
            _claim_unfinished(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_local_ddp(config)
        _claim_unfinished(Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sys.stderr.write("\n")  # off the last job's progress bar
        for line in summarise_sweep(sweep_dir):
            log.info(line)
        release(sweep_dir)
        left = unfinished(sweep_dir)
        if left:  # cancelled or interrupted jobs: the sweep is not done
            raise SystemExit(left)
        _refuse_all_failed(sweep_dir)
