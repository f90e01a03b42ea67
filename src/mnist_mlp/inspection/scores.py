"""Test loss, accuracy and per-class accuracy of a saved checkpoint, and its confusion matrix
(python -m mnist_mlp.inspection.evaluate).

The test data is the one the checkpoint was trained on (every checkpoint carries its data
settings, so it may lie anywhere), unless data.root says where it is now.
Lightning's test loop scores it; the confusion matrix is written beside the checkpoint as
<checkpoint>.confusion.png.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from PIL import Image

from mnist_mlp.inspection.classify import best_checkpoint, load, quiet_trainer
from mnist_mlp.inspection.pictures import class_names, confusion_image
from mnist_mlp.training.data import MNISTDataModule
from mnist_mlp.training.idx_files import DATASETS


def evaluate(ckpt: Path, data_root: str | None = None) -> dict[str, float | dict[str, float]]:
    """Scores of the checkpoint on its run's test split; writes the confusion matrix PNG."""
    model, trained_on = load(ckpt)
    settings = dict(trained_on.hparams) | ({"root": data_root} if data_root is not None else {})
    datamodule = MNISTDataModule(**settings)
    datamodule.prepare_data()  # missing or damaged data: one sentence
    scores = quiet_trainer().test(model, datamodule=datamodule, verbose=False)[0]
    labels = datamodule.splits["test"][1].cpu()
    predicted = torch.cat(model.test_predictions).cpu()
    correct = (predicted == labels).float()
    names = DATASETS[datamodule.dataset].classes  # torchvision's: "7 - seven", "Sneaker", ...
    per_class = {name: correct[labels == k].mean().item() for k, name in enumerate(names)}
    picture = confusion_image(labels, predicted, class_names(datamodule.dataset))
    picture = picture.permute(1, 2, 0).numpy()
    path = ckpt.with_name(ckpt.name + ".confusion.png")
    try:
        Image.fromarray(picture).save(path)
        written = f"confusion matrix  {path.name} beside the checkpoint"
    except OSError as error:  # a read-only folder: the scores are still whole
        written = f"confusion matrix  not written to {path} ({error.strerror})"
    return scores | {"per_class_acc": per_class, "confusion": written}


def print_scores(cfg: DictConfig) -> None:
    ckpt = best_checkpoint(Path(cfg.ckpt))
    scores = evaluate(ckpt, cfg.data.root)
    print(f"checkpoint  {ckpt}")
    print(f"test/loss   {scores['test/loss']:.4f}")
    print(f"test/acc    {scores['test/acc']:.4f}")
    for name, accuracy in scores["per_class_acc"].items():
        print(f"  {name:<12} {accuracy:.4f}")
    print(scores["confusion"])
