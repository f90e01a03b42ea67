"""Test loss, accuracy and per-class accuracy of a saved checkpoint, and its confusion matrix.

    python -m mnist_mlp.evaluate ckpt=<checkpoint or run dir> [data.root=<folder>]

The test data is the run's own (its .hydra/config.yaml), unless data.root says where it is now.
The confusion matrix is written beside the checkpoint as <checkpoint>.confusion.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from mnist_mlp.errors import UsageError
from mnist_mlp.model import CLASSES
from mnist_mlp.pictures import confusion_image
from mnist_mlp.predict import best_checkpoint, load, parse_args


def evaluate(ckpt: Path, data_root: str | None = None) -> dict[str, float | list[float]]:
    """Scores of the checkpoint on its run's test split; writes the confusion matrix PNG."""
    config_file = ckpt.resolve().parent.parent / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise UsageError(f"{ckpt} is not inside a run dir (no {config_file}) to say what data.")
    data_config = OmegaConf.load(config_file).data
    if data_root is not None:
        data_config.root = data_root
    datamodule = instantiate(data_config, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup()
    model, _, _ = load(ckpt)
    images, labels = datamodule.splits["test"]
    with torch.no_grad():
        logits = torch.cat([model(batch) for batch in images.split(1000)])
    predicted = logits.argmax(1)
    correct = (predicted == labels).float()
    per_class = [correct[labels == digit].mean().item() for digit in range(CLASSES)]
    picture = confusion_image(labels, predicted).permute(1, 2, 0).numpy()
    Image.fromarray(picture).save(ckpt.with_name(ckpt.name + ".confusion.png"))
    return {
        "test/loss": model.loss_fn(logits, labels).item(),
        "test/acc": correct.mean().item(),
        "per_class_acc": per_class,
    }


def main(argv: list[str]) -> None:
    usage = "python -m mnist_mlp.evaluate ckpt=<checkpoint or run dir> [data.root=<folder>]"
    args = parse_args(argv, ("ckpt",), usage, optional=("data.root",))
    ckpt = best_checkpoint(Path(args["ckpt"]))
    scores = evaluate(ckpt, args.get("data.root"))
    print(f"checkpoint  {ckpt}")
    print(f"test/loss   {scores['test/loss']:.4f}")
    print(f"test/acc    {scores['test/acc']:.4f}")
    for digit, accuracy in enumerate(scores["per_class_acc"]):
        print(f"  class {digit}  {accuracy:.4f}")
    print(f"confusion matrix  {ckpt.name}.confusion.png beside the checkpoint")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UsageError as error:
        raise SystemExit(str(error)) from None
