"""Wiring: the composed config becomes data, model, logger and trainer; fit, evaluate, report."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from mnist_mlp import hparams
from mnist_mlp.checkpoint import loaded
from mnist_mlp.config import hyperparameters, last_checkpoint, plain
from mnist_mlp.data import MNISTDataModule
from mnist_mlp.errors import Diverged, Interrupted, UsageError
from mnist_mlp.model import MLP
from mnist_mlp.study import StepsToTarget

log = logging.getLogger(__name__)

# What each run is judged by in metrics.json: the best checkpoint's (by val/acc) scores.
SCORES = ("val/acc", "val/loss", "test/acc", "test/loss")
VAL = ("val/acc", "val/loss")
BEST = "best_checkpoint"
# Train and validation curves on one chart each.
CHARTS = {
    "train and val": {
        "loss": ["Multiline", ["train/loss", "val/loss"]],
        "accuracy": ["Multiline", ["train/acc", "val/acc"]],
    }
}  # in metrics.json: the best checkpoint by val/acc, relative to the run dir


def accelerators() -> list[str]:
    """What trainer.accelerator can be on this machine."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append(f"gpu ({torch.cuda.device_count()} CUDA device(s))")
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def make_logger(cfg: DictConfig, run_dir: Path) -> Logger:
    """The configured Lightning logger, writing into the run dir; a missing package in one
    sentence (wandb and mlflow are optional: the [loggers] extra)."""
    where = {"save_dir": str(run_dir)}
    target = cfg.logger["_target_"]  # e.g. lightning.pytorch.loggers.MLFlowLogger
    if target.endswith("MLFlowLogger") and not cfg.logger.get("tracking_uri"):
        # MLflow's own database in the run dir (MLflow 3 refuses a plain-file store).
        where |= {"tracking_uri": f"sqlite:///{run_dir.resolve()}/mlflow.db"}
        where |= {"artifact_location": str(run_dir.resolve() / "mlflow-artifacts")}
    try:  # Lightning's loggers check that their package is installed when they are made
        return instantiate(cfg.logger, **where)
    except InstantiationException as error:
        missing = error
        while missing is not None and not isinstance(missing, ModuleNotFoundError):
            missing = missing.__cause__
        if missing is None:
            raise
        raise UsageError(
            f"{target.rsplit('.', 1)[-1]} needs a package this environment lacks "
            f'({missing}); pip install "mnist-mlp[loggers]", or choose logger=tensorboard, '
            "csv or null."
        ) from None


def build(cfg: DictConfig, run_dir: Path) -> tuple[MNISTDataModule, MLP, Trainer]:
    """The run's data, model and trainer (logging into run_dir), seeded, as the config says."""
    seed_everything(cfg.seed, workers=True, verbose=False)
    # logger=null: no logger at all, not Lightning's default one.
    logger: Logger | bool = make_logger(cfg, run_dir) if cfg.logger else False
    tensorboard = isinstance(logger, TensorBoardLogger)
    # Under Slurm, Lightning takes the ranks from Slurm but leaves requeueing to submitit
    # (hydra/launcher=slurm resumes from last.ckpt): one mechanism, not two.
    plugins = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
    try:  # before any data is read
        trainer: Trainer = instantiate(
            cfg.trainer, logger=logger, default_root_dir=str(run_dir), plugins=plugins
        )
    except InstantiationException as error:
        raise UsageError(
            f"lightning.Trainer refused the trainer.* settings: {error.__cause__ or error} "
            f"(this machine has: {', '.join(accelerators())})"
        ) from None
    for saving in trainer.checkpoint_callbacks:  # <run dir>/checkpoints/ whatever the logger
        if isinstance(saving, ModelCheckpoint) and saving.dirpath is None:
            saving.dirpath = str(run_dir / "checkpoints")
    if cfg.study.target is not None:
        trainer.callbacks.append(StepsToTarget(cfg.study.target))
    if tensorboard:
        trainer.callbacks.append(instantiate(plain(cfg.pictures), _convert_="all"))
    else:
        log.info("The pictures, histograms and HParams are TensorBoard's: off with this logger.")
    datamodule: MNISTDataModule = instantiate(plain(cfg.data), _convert_="all")
    datamodule.prepare_data()  # missing or damaged data is reported before any other work
    model: MLP = instantiate(plain(cfg.model), _convert_="all")  # plain lists, no OmegaConf
    log.info(f"Model: {model.describe()}")
    if logger and trainer.is_global_zero:  # with DDP, the first process writes the run's files
        logger.log_hyperparams(hyperparameters(cfg))  # hparams.yaml beside the logs
        if tensorboard:
            hparams.declare(run_dir, hyperparameters(cfg))
            logger.experiment.add_custom_scalars(CHARTS)  # TensorBoard's Custom Scalars tab
    return datamodule, model, trainer


def write_metrics(
    run_dir: Path,
    cfg: DictConfig,
    status: str,
    scores: dict,
    start: float,
    trainer: Trainer | None = None,
) -> dict:
    """metrics.json: status (ok, diverged, interrupted, failed), scores, settings, wall seconds;
    the noise scale's epoch means and the steps to study.target, when measured."""
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
            if isinstance(callback, StepsToTarget):
                metrics |= callback.record()
    if rank_zero_only.rank == 0:  # with DDP, the first process writes the run's files
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        hparams.end(run_dir, status)
    return metrics


def best_entry(trainer: Trainer, run_dir: Path) -> dict[str, str]:
    """{BEST: the best checkpoint by val/acc, relative to the run dir}, or {} before the first."""
    saving_best = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
    best = saving_best[0].best_model_path if saving_best else ""
    return {BEST: str(Path(best).resolve().relative_to(run_dir.resolve()))} if best else {}


def interrupted(trainer: Trainer, run_dir: Path, fitted: bool) -> str:
    """What was kept of a run stopped by a signal, and how to go on."""
    if fitted:
        return (
            f"Stopped while scoring the best checkpoint; training had finished "
            f"({trainer.current_epoch} epochs): python -m mnist_mlp.evaluate ckpt={run_dir} "
            "scores it."
        )
    last = last_checkpoint(run_dir)
    kept = (
        f"{last} holds the last finished epoch; resume with the same settings plus ckpt_path={last}"
        if last.is_file()
        else "no epoch had finished, so there is nothing to resume"
    )
    return f"Training stopped in epoch {trainer.current_epoch}: {kept}."


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train and test one run into run_dir; return what metrics.json holds."""
    start = time.perf_counter()
    if cfg.ckpt_path is not None:  # a damaged checkpoint is named before any other work
        loaded(
            Path(cfg.ckpt_path), "ckpt_path", lambda: torch.load(cfg.ckpt_path, weights_only=True)
        )
    datamodule, model, trainer = build(cfg, run_dir)
    fitted = False
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        fitted = True
        # Report the checkpoint a user would keep: the best on validation (none in a dry run).
        scores = best_entry(trainer, run_dir)
        best = str(run_dir / scores[BEST]) if scores else None
        loggers, trainer.loggers = trainer.loggers, []  # not a point on the val/ curves
        scores |= trainer.validate(
            model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True
        )[0]
        trainer.loggers = loggers
        for logger in loggers:  # the best checkpoint's, under names of their own
            logger.log_metrics({f"best/{k}": scores[k] for k in VAL}, step=model.sgd_steps)
        scores |= trainer.test(
            model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True
        )[0]
    except Diverged:
        best = best_entry(trainer, run_dir)
        write_metrics(run_dir, cfg, "diverged", best, start, trainer)
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
