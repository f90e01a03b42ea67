"""The composed config becomes the run's data, model, logger and trainer."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig

from mnist_mlp.config.schema import AUTO
from mnist_mlp.config.settings import hyperparameters, plain
from mnist_mlp.errors import UsageError
from mnist_mlp.measure.steps_to_target import StepsToTarget
from mnist_mlp.run import hparams_tab
from mnist_mlp.run.stop_together import StopTogether
from mnist_mlp.training.auto_batch import AutoBatchSize
from mnist_mlp.training.costs import CLASSES
from mnist_mlp.training.data import MNISTDataModule
from mnist_mlp.training.model import IMAGE_PIXELS, MLP

log = logging.getLogger(__name__)

# Train and validation curves on one chart each.
CHARTS = {
    "train and val": {
        "loss": ["Multiline", ["train/loss", "val/loss"]],
        "accuracy": ["Multiline", ["train/acc", "val/acc"]],
    }
}  # in metrics.json: the best checkpoint by val/acc, relative to the run dir


def describe(model: MLP) -> str:
    """E.g. "784-512-256-10 relu, 535,818 parameters"."""
    sizes = [IMAGE_PIXELS, *model.hparams.hidden_sizes, CLASSES]
    count = sum(parameter.numel() for parameter in model.parameters())
    return f"{'-'.join(map(str, sizes))} {model.hparams.activation}, {count:,} parameters"


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


def keep_csv_rows(logger: CSVLogger) -> None:
    """A resumed run appends to its metrics.csv: Lightning's CSV writer deletes the file when it
    starts, so the earlier epochs' rows are put back, and their columns given to the writer."""
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    rows = path.read_text()
    with open(path, newline="") as file:
        columns = next(csv.reader(file), [])
    writer = logger.experiment  # made now: it deletes the file
    path.write_text(rows)
    writer.metrics_keys = columns


def build(cfg: DictConfig, run_dir: Path) -> tuple[MNISTDataModule, MLP, Trainer]:
    """The run's data, model and trainer (logging into run_dir), seeded, as the config says."""
    seed_everything(cfg.seed, workers=True, verbose=False)
    # logger=null: no logger at all, not Lightning's default one.
    logger: Logger | bool = make_logger(cfg, run_dir) if cfg.logger else False
    tensorboard = isinstance(logger, TensorBoardLogger)
    if isinstance(logger, CSVLogger) and cfg.ckpt_path is not None:
        keep_csv_rows(logger)
    # Under Slurm, Lightning takes the ranks from Slurm but leaves requeueing to submitit
    # (hydra/launcher=slurm resumes from last.ckpt): one mechanism, not two.
    on_slurm = SLURMEnvironment.detect()
    plugins = [SLURMEnvironment(auto_requeue=False)] if on_slurm else []
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
    if on_slurm:  # Slurm's signal before the time limit stops every process at one step
        trainer.callbacks.append(StopTogether())
    if cfg.batch_size == AUTO:
        trainer.callbacks.append(AutoBatchSize(cfg.auto_batch.smallest, cfg.auto_batch.largest))
    if cfg.study.target is not None:
        trainer.callbacks.append(StepsToTarget(cfg.study.target, cfg.study.every_examples))
    if tensorboard:
        trainer.callbacks.append(instantiate(plain(cfg.pictures), _convert_="all"))
    else:
        log.info("The pictures, histograms and HParams are TensorBoard's: off with this logger.")
    datamodule: MNISTDataModule = instantiate(plain(cfg.data), _convert_="all")
    datamodule.prepare_data()  # missing or damaged data is reported before any other work
    model: MLP = instantiate(plain(cfg.model), _convert_="all")  # plain lists, no OmegaConf
    log.info(f"Model: {describe(model)}")
    if logger and trainer.is_global_zero:  # with DDP, the first process writes the run's files
        logger.log_hyperparams(hyperparameters(cfg))  # hparams.yaml beside the logs
        if tensorboard:
            hparams_tab.declare(run_dir, hyperparameters(cfg))
            logger.experiment.add_custom_scalars(CHARTS)  # TensorBoard's Custom Scalars tab
    return datamodule, model, trainer
