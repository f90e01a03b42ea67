"""Wiring: the composed config becomes data, model, logger and trainer; fit, evaluate, report."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning import LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from mnist_mlp.errors import UsageError

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
    seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule: LightningDataModule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # missing data is reported before any other work
    model: LightningModule = instantiate(cfg.model, _convert_="all")
    logger: TensorBoardLogger = instantiate(cfg.logger, save_dir=str(run_dir))
    trainer: Trainer = instantiate(cfg.trainer, logger=logger)
    log_hparams(logger, hyperparameters(cfg))
    return datamodule, model, trainer


def train(cfg: DictConfig, run_dir: Path) -> dict[str, float | int | str | bool]:
    """Train and test one run into run_dir; return what metrics.json holds."""
    start = time.perf_counter()
    datamodule, model, trainer = build(cfg, run_dir)
    trainer.fit(model, datamodule=datamodule)
    # Report the checkpoint a user would keep: the best on validation.
    scores = trainer.validate(model, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
    scores |= trainer.test(model, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
    metrics = {name: scores[name] for name in SCORES} | hyperparameters(cfg)
    metrics["wall_seconds"] = round(time.perf_counter() - start, 2)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info(
        "\n".join(
            [
                f"{'':-<60}",
                *(f"{name:<10} {scores[name]:.4f}" for name in SCORES),
                f"best checkpoint  {trainer.checkpoint_callback.best_model_path}",
                f"run dir          {run_dir}",
                f"TensorBoard      tensorboard --logdir {run_dir.parent}",
                f"{'':-<60}",
            ]
        )
    )
    return metrics


def run(cfg: DictConfig) -> float:
    """Hydra's task function: one run in Hydra's output dir; returns val/acc for sweepers."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return train(cfg, run_dir)["val/acc"]
    except UsageError as error:
        log.error(str(error))
        raise SystemExit(1) from None
