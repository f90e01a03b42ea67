"""Fit one run, score its best checkpoint, and record it."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import time
from pathlib import Path

import torch
from lightning import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from mnist_mlp.config.command_line import last_checkpoint
from mnist_mlp.config.settings import plain
from mnist_mlp.errors import Diverged, Interrupted, UsageError
from mnist_mlp.run.build import build
from mnist_mlp.run.record import BEST, SCORES, best_entry, write_metrics
from mnist_mlp.training.checkpoints import loaded

log = logging.getLogger(__name__)


def interrupted(trainer: Trainer, run_dir: Path, fitted: bool) -> str:
    """What was kept of a run stopped by a signal, and how to go on."""
    if fitted:
        return (
            f"Stopped while scoring the best checkpoint; training had finished "
            f"({trainer.current_epoch} epochs): python -m mnist_mlp.inspection.evaluate "
            f"ckpt={run_dir} "
            "scores it."
        )
    last = last_checkpoint(run_dir)
    kept = (
        f"{last} holds the last finished epoch; resume with the same settings plus ckpt_path={last}"
        if last.is_file()
        else "no epoch had finished, so there is nothing to resume"
    )
    return f"Training stopped in epoch {trainer.current_epoch}: {kept}."


# A folder that cannot be written, a full disk or quota.
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def not_written(error: OSError, run_dir: Path) -> str:
    """What could not be written, and what was kept."""
    last = last_checkpoint(run_dir)
    kept = (
        f"{last} holds the last finished epoch: make room or make the folder writable, then "
        f"resume with the same settings plus ckpt_path={last}"
        if last.is_file()
        else "no epoch had been saved; make room or make the folder writable and run it again"
    )
    return f"Could not write {error.filename or run_dir} ({error.strerror}); {kept}."


def refuse_another_model(saved: dict, cfg: DictConfig) -> None:
    """A checkpoint whose network differs from the settings' (a last.ckpt copied between runs)."""
    model = plain(cfg.model)
    for key in ("hidden_sizes", "activation", "outputs"):  # what the weights' shapes depend on
        if key in saved and saved[key] != model[key]:
            raise UsageError(
                f"ckpt_path={cfg.ckpt_path} holds a network with model.{key}={saved[key]!r}, but "
                f"this run says model.{key}={model[key]!r}; resume it with its own settings, or "
                "start a new run without ckpt_path."
            )


def fit_and_test(cfg: DictConfig, run_dir: Path) -> dict:
    """Train and test one run into run_dir; return what metrics.json holds."""
    start = time.perf_counter()
    if cfg.ckpt_path is not None:  # a damaged or foreign checkpoint is named before any work
        checkpoint = loaded(
            Path(cfg.ckpt_path), "ckpt_path", lambda: torch.load(cfg.ckpt_path, weights_only=True)
        )
        refuse_another_model(checkpoint.get("hyper_parameters", {}), cfg)
    try:
        datamodule, model, trainer = build(cfg, run_dir)
    except OSError as error:  # e.g. a run folder that cannot be written
        if error.errno not in NOT_WRITABLE:
            raise
        raise UsageError(not_written(error, run_dir)) from None
    fitted = False
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        fitted = True
        # Report the checkpoint a user would keep: the best on validation (none in a dry run),
        # its weights loaded once for both scorings (and Lightning's "Restoring states" not said
        # twice).
        scores = best_entry(trainer, run_dir)
        best = str(run_dir / scores[BEST]) if scores else None
        if best is not None:
            device = model.device
            saved = loaded(
                Path(best), BEST, lambda: torch.load(best, map_location=device, weights_only=True)
            )
            model.load_state_dict(saved["state_dict"])
        loggers, trainer.loggers = trainer.loggers, []  # not a point on the val/ curves
        scores |= trainer.validate(model, datamodule=datamodule, verbose=False)[0]
        trainer.loggers = loggers
        scores |= trainer.test(model, datamodule=datamodule, verbose=False)[0]
        # The best checkpoint's scores under names of their own, which sort first: TensorBoard's
        # HParams shows the first metrics by name (best/test/acc, ..., best/val/loss).
        for logger in loggers:
            logger.log_metrics({f"best/{k}": scores[k] for k in SCORES}, step=model.sgd_steps)
    except OSError as error:
        if error.errno not in NOT_WRITABLE:
            raise
        with contextlib.suppress(OSError):  # the same folder or disk may refuse this too
            write_metrics(run_dir, cfg, "failed", best_entry(trainer, run_dir), start, trainer)
        raise UsageError(not_written(error, run_dir)) from None
    except Diverged as diverged:
        best = best_entry(trainer, run_dir)
        write_metrics(run_dir, cfg, "diverged", best, start, trainer)
        if isinstance(trainer.logger, TensorBoardLogger) and trainer.is_global_zero:
            # In the Text tab, at the step it happened: the curves alone show only a gap.
            trainer.logger.experiment.add_text("status", f"diverged: {diverged}", model.sgd_steps)
            trainer.logger.experiment.flush()
        raise
    except SystemExit as stop:  # how Lightning ends after Ctrl-C (SIGINT) or SIGTERM
        if not trainer.interrupted:
            raise
        signal_number = signal.SIGTERM if isinstance(stop, SIGTERMException) else signal.SIGINT
        best = best_entry(trainer, run_dir)
        write_metrics(run_dir, cfg, "interrupted", best, start, trainer)
        raise Interrupted(interrupted(trainer, run_dir, fitted), 128 + signal_number) from None
    metrics = write_metrics(run_dir, cfg, "ok", scores, start, trainer)
    if trainer.is_global_zero:
        log.info(
            "\n".join(
                [
                    f"{'':-<60}",
                    *(f"{name:<10} {scores[name]:.4f}" for name in SCORES),
                    f"best checkpoint  {best or 'none (a dry run saves none)'}",
                    f"run dir          {run_dir}",
                    *(
                        [f"TensorBoard      tensorboard --logdir {run_dir.parent}"]
                        if isinstance(trainer.logger, TensorBoardLogger)
                        else []
                    ),
                    f"{'':-<60}",
                ]
            )
        )
    return metrics
