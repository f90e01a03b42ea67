"""The class of each image file, by a trained checkpoint (python -m mnist_mlp.inspection.predict).

Any size, grayscale or colour, dark-on-light or light-on-dark, transparent or not: each image is
prepared as the checkpoint's data set's images were (inspection/images.py), normalised as the
training data was, and classified by the model's predict_step through Lightning's
Trainer.predict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning import Trainer
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader

from mnist_mlp.console import quiet_lightning
from mnist_mlp.errors import UsageError
from mnist_mlp.inspection.images import BLANK_CONTRAST, PREPARED_AS, grayscale
from mnist_mlp.training.checkpoints import loaded
from mnist_mlp.training.data import MNISTDataModule
from mnist_mlp.training.idx_files import DATASETS
from mnist_mlp.training.model import MLP


def best_checkpoint(path: Path) -> Path:
    """The checkpoint itself, or a run dir's best checkpoint by val/acc (its metrics.json)."""
    if path.is_file():
        return path
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        raise UsageError(
            f"ckpt={path} is neither a checkpoint file nor a run dir with {metrics_file}."
        )
    best = json.loads(metrics_file.read_text()).get("best_checkpoint")
    if best is None:
        raise UsageError(
            f"ckpt={path}: its metrics.json names no best checkpoint (the run ended before "
            f"one was saved, or an older version wrote it); give a checkpoint file from "
            f"{path / 'checkpoints'}."
        )
    return path / best  # relative to the run dir: the run dir may have moved


def load(ckpt: Path) -> tuple[MLP, MNISTDataModule]:
    """The model in eval mode and its data module (dataset, normalisation) from a checkpoint."""
    model = loaded(
        ckpt, "ckpt", lambda: MLP.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    )
    data = loaded(
        ckpt,
        "ckpt",
        lambda: MNISTDataModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True),
    )
    return model.eval(), data


def image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UsageError(f"images={path} is neither a file nor a folder.")
    files = sorted(p for p in path.iterdir() if p.is_file())
    if not files:
        raise UsageError(f"images={path} holds no files (a broken link is not one); no images.")
    return files


def quiet_trainer() -> Trainer:
    """A Trainer for one pass over given data: no logs, checkpoints, progress bar or summary."""
    quiet_lightning(device_lines=False)
    return Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def predict(model: MLP, data: MNISTDataModule, images: list[torch.Tensor]) -> torch.Tensor:
    """Class probabilities, one row per 28x28 image in [0, 1]."""
    normalised = (torch.stack(images) - data.mean) / data.std
    batches = quiet_trainer().predict(model, DataLoader(normalised, batch_size=1000))
    return torch.cat(batches)


def predict_files(cfg: DictConfig) -> int:
    """Print each image's class and probabilities; name the files that are not images."""
    model, data = load(best_checkpoint(Path(cfg.ckpt)))
    names = DATASETS[data.dataset].classes  # torchvision's: "7 - seven", "Sneaker", ...
    files, prepared, unreadable = [], [], []
    for path in image_files(Path(cfg.images)):
        try:
            with Image.open(path) as image:
                gray = grayscale(image)
                if gray.max() - gray.min() < BLANK_CONTRAST:
                    unreadable.append(f"{path}: blank (no contrast to read a digit from); skipped")
                    continue
                prepared.append(PREPARED_AS[data.dataset](gray))
            files.append(path)
        except Image.DecompressionBombError:
            unreadable.append(f"{path}: more pixels than PIL's decompression-bomb guard allows")
        except (UnidentifiedImageError, OSError) as error:
            unreadable.append(f"{path}: not an image this can read ({error.__class__.__name__})")
    if files:
        for path, row in zip(files, predict(model, data, prepared), strict=True):
            odds = "  ".join(f"{index}:{p:.2f}" for index, p in enumerate(row.tolist()))
            print(f"{path}: {names[int(row.argmax())]}   ({odds})")
    for line in unreadable:
        print(line, file=sys.stderr)
    return 1 if unreadable or not files else 0
