"""Wiring: the composed config becomes data, model, logger and trainer; fit, evaluate, report."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from mnist_mlp.config import check_config
from mnist_mlp.errors import Diverged, Interrupted, UsageError

log = logging.getLogger(__name__)

# What each run is judged by: TensorBoard's HParams tab and metrics.json both show these.
SCORES = ("val/acc", "val/loss", "test/acc", "test/loss")


def hyperparameters(cfg: DictConfig) -> dict[str, float | int | str | bool]:
    """The run's settings as flat scalars, for metrics.json and TensorBoard's HParams tab."""
    model = cfg.model
    return {
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "loss": cfg.loss,
        "dataset": cfg.data.dataset,
        "hidden_sizes": str(list(model.hidden_sizes)),
        "activation": model.activation,
        "momentum": model.momentum,
        "nesterov": model.nesterov,
        "weight_decay": model.weight_decay,
        "lr_schedule": model.lr_schedule,
        "backprop": model.backprop,
    }


def log_hparams(logger: TensorBoardLogger, hparams: dict) -> None:
    """Declare the hyperparameters and the score tags so the HParams tab can compare runs.

    Only the tag names are written here; the values come from the scalars logged during the run,
    so no made-up point lands on the curves.
    """
    logger.log_hyperparams(hparams)  # hparams.yaml beside the event file
    writer = logger.experiment._get_file_writer()
    for summary in hparams_summaries(hparams, dict.fromkeys(SCORES, 0.0)):
        writer.add_summary(summary)


def build(cfg: DictConfig, run_dir: Path) -> tuple[LightningDataModule, LightningModule, Trainer]:
    """The run's data, model and trainer (logging into run_dir), seeded, as the config says."""
    check_config(cfg)  # before any work
    seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule: LightningDataModule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # missing data is reported before any other work
    model: LightningModule = instantiate(cfg.model, _convert_="all")
    logger: TensorBoardLogger = instantiate(cfg.logger, save_dir=str(run_dir))
    trainer: Trainer = instantiate(cfg.trainer, logger=logger)
    trainer.callbacks.append(instantiate(cfg.pictures))
    if trainer.is_global_zero:  # with DDP, the first process writes the run's files
        log_hparams(logger, hyperparameters(cfg))
    return datamodule, model, trainer


def write_metrics(
    run_dir: Path, cfg: DictConfig, status: str, scores: dict, start: float, epochs_run: int = 0
) -> dict[str, float | int | str | bool | None]:
    """metrics.json: status (ok, diverged, interrupted, failed), scores, settings, wall seconds."""
    metrics = {"status": status} | {name: scores.get(name) for name in SCORES}
    # The thread count changes float rounding: part of what reproduces a run exactly.
    metrics |= hyperparameters(cfg) | {
        "epochs_run": epochs_run,
        "torch_threads": torch.get_num_threads(),
    }
    metrics["wall_seconds"] = round(time.perf_counter() - start, 2)
    if rank_zero_only.rank == 0:  # with DDP, the first process writes the run's files
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def train(cfg: DictConfig, run_dir: Path) -> dict[str, float | int | str | bool | None]:
    """Train and test one run into run_dir; return what metrics.json holds."""
    start = time.perf_counter()
    datamodule, model, trainer = build(cfg, run_dir)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    except Diverged:
        write_metrics(run_dir, cfg, "diverged", {}, start, trainer.current_epoch)
        raise
    except SystemExit as stop:  # how Lightning ends fit after Ctrl-C (SIGINT) or SIGTERM
        if not trainer.interrupted:
            raise
        signal_number = signal.SIGTERM if isinstance(stop, SIGTERMException) else signal.SIGINT
        write_metrics(run_dir, cfg, "interrupted", {}, start, trainer.current_epoch)
        last = run_dir / "checkpoints" / "last.ckpt"
        kept = (
            f"{last} holds the last finished epoch; resume with the same settings plus "
            f"ckpt_path={last}"
            if last.is_file()
            else "no epoch had finished, so there is nothing to resume"
        )
        raise Interrupted(
            f"Training stopped in epoch {trainer.current_epoch}: {kept}.", 128 + signal_number
        ) from None
    # Report the checkpoint a user would keep: the best on validation (named, since last.ckpt
    # has a ModelCheckpoint of its own).
    best = trainer.checkpoint_callback.best_model_path
    scores = trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    scores |= trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    metrics = write_metrics(run_dir, cfg, "ok", scores, start, trainer.current_epoch)
    if trainer.is_global_zero:
        log.info(
            "\n".join(
                [
                    f"{'':-<60}",
                    *(f"{name:<10} {scores[name]:.4f}" for name in SCORES),
                    f"best checkpoint  {best}",
                    f"run dir          {run_dir}",
                    f"TensorBoard      tensorboard --logdir {run_dir.parent}",
                    f"{'':-<60}",
                ]
            )
        )
    return metrics


def resumed_run_dir(cfg: DictConfig) -> Path:
    """The run dir that ckpt_path belongs to, after checking this run's settings match it."""
    if not Path(cfg.ckpt_path).is_file():
        raise UsageError(
            f"ckpt_path={cfg.ckpt_path} is not a file; give <run dir>/checkpoints/last.ckpt."
        )
    run_dir = Path(cfg.ckpt_path).resolve().parent.parent
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise UsageError(
            f"ckpt_path={cfg.ckpt_path} is not inside a run dir (no {saved}); "
            "give <run dir>/checkpoints/last.ckpt."
        )
    # Only the number of epochs may change: anything else would not continue the same run.
    before = hyperparameters(OmegaConf.load(saved)) | {"epochs": cfg.epochs}
    changed = {k: (v, before[k]) for k, v in hyperparameters(cfg).items() if before[k] != v}
    if changed:
        key, (now, then) = next(iter(changed.items()))
        raise UsageError(
            f"ckpt_path belongs to a run trained with {key}={then!r}, but this run says "
            f"{key}={now!r}; resume with that run's settings ({run_dir}/.hydra/overrides.yaml)."
        )
    return run_dir


def run(cfg: DictConfig) -> float:
    """Hydra's task function: one run, its val/acc returned for sweepers (nan if it failed).

    A run stops with one sentence and exit 1 on bad settings or data or a diverged loss, or
    exit 130 (Ctrl-C) or 143 (SIGTERM). In a multirun a job that fails or diverges is recorded
    in its metrics.json and the sweep goes on; the sweep summary shows it.
    """
    hydra_config = HydraConfig.get()
    sweeping = hydra_config.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_config.runtime.output_dir)
    start = time.perf_counter()
    try:
        if cfg.ckpt_path is not None:
            run_dir = resumed_run_dir(cfg)
            log.info(f"Resuming {run_dir} from {cfg.ckpt_path}")
        return train(cfg, run_dir)["val/acc"]
    except (UsageError, Diverged) as error:
        sys.stderr.write("\n")  # off the progress bar's line
        log.error(str(error))
        if not sweeping:
            raise SystemExit(1) from None
        if not (run_dir / "metrics.json").is_file():
            write_metrics(run_dir, cfg, "failed", {}, start)
    except Interrupted as error:
        sys.stderr.write("\n")
        log.error(str(error))
        raise SystemExit(error.exit_code) from None
    except Exception:
        if not sweeping:
            raise
        log.exception("This job failed; the sweep goes on.")
        write_metrics(run_dir, cfg, "failed", {}, start)
    return math.nan
