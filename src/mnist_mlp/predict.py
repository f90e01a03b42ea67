"""The digit in image files, by a trained checkpoint.

    python -m mnist_mlp.predict ckpt=<checkpoint or run dir> images=<image file or folder>

Any size, grayscale or colour, dark-on-light or light-on-dark: each image is prepared as MNIST's
were (grayscale, light digit on dark, the digit fitted into 20x20 by its aspect, its centre of
mass moved to the middle of 28x28), normalised as the training data was, and classified.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mnist_mlp.errors import UsageError
from mnist_mlp.model import MLP


def parse_args(
    argv: list[str], required: tuple[str, ...], usage: str, optional: tuple[str, ...] = ()
) -> dict[str, str]:
    """key=value arguments, as Hydra takes them; a missing or unknown key raises UsageError."""
    pairs = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    if len(pairs) != len(argv) or not set(required) <= set(pairs) <= {*required, *optional}:
        raise UsageError(f"Got {' '.join(argv) or 'no arguments'}; usage: {usage}")
    return pairs


def best_checkpoint(path: Path) -> Path:
    """The checkpoint itself, or a run dir's best-by-validation checkpoint."""
    if path.is_file():
        return path
    last = path / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise UsageError(f"ckpt={path} is neither a checkpoint file nor a run dir with {last}.")
    state = torch.load(last, map_location="cpu", weights_only=False)["callbacks"]
    best = next(
        v["best_model_path"]
        for k, v in state.items()
        if k.startswith("ModelCheckpoint") and v["monitor"] is not None  # not last.ckpt's own
    )
    return last.parent / Path(best).name  # by name: the run dir may have moved


def load(ckpt: Path) -> tuple[MLP, float, float]:
    """The model in eval mode and the (mean, std) its training data was normalised with."""
    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
        model = MLP.load_from_checkpoint(ckpt, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same sentence
        raise UsageError(f"ckpt={ckpt} is not a readable mnist-mlp checkpoint ({error}).") from None
    stats = checkpoint["MNISTDataModule"]
    return model.eval(), stats["mean"], stats["std"]


def mnist_like(image: Image.Image) -> torch.Tensor:
    """28x28 floats in [0, 1]: a light digit fitted into 20x20, centred by its centre of mass."""
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255
    edge = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if edge.mean() > 0.5:  # a light background: MNIST's digits are light on dark
        gray = 1 - gray
    ink = gray > 0.5 * gray.max()
    if not ink.any():
        return torch.zeros(28, 28)
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    digit = gray[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    scale = 20 / max(digit.shape)
    size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
    fitted = Image.fromarray((digit * 255).astype(np.uint8)).resize(size, Image.LANCZOS)
    fitted = np.asarray(fitted, dtype=np.float32) / 255
    weights = fitted / max(fitted.sum(), 1e-6)
    centre_y = (weights.sum(1) * np.arange(fitted.shape[0])).sum()
    centre_x = (weights.sum(0) * np.arange(fitted.shape[1])).sum()
    top = int(np.clip(round(13.5 - centre_y), 0, 28 - fitted.shape[0]))
    left = int(np.clip(round(13.5 - centre_x), 0, 28 - fitted.shape[1]))
    canvas = np.zeros((28, 28), dtype=np.float32)
    canvas[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return torch.from_numpy(canvas)


def image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    raise UsageError(f"images={path} is neither a file nor a folder.")


def predict(model: MLP, mean: float, std: float, images: list[torch.Tensor]) -> torch.Tensor:
    """Class probabilities, one row per 28x28 image in [0, 1]."""
    with torch.no_grad():
        return torch.softmax(model((torch.stack(images) - mean) / std), dim=1)


def main(argv: list[str]) -> int:
    usage = "python -m mnist_mlp.predict ckpt=<checkpoint or run dir> images=<file or folder>"
    args = parse_args(argv, ("ckpt", "images"), usage)
    model, mean, std = load(best_checkpoint(Path(args["ckpt"])))
    files, prepared, unreadable = [], [], []
    for path in image_files(Path(args["images"])):
        try:
            with Image.open(path) as image:
                prepared.append(mnist_like(image))
            files.append(path)
        except (UnidentifiedImageError, OSError) as error:
            unreadable.append(f"{path}: not an image this can read ({error.__class__.__name__})")
    if files:
        for path, row in zip(files, predict(model, mean, std, prepared), strict=True):
            odds = "  ".join(f"{digit}:{p:.2f}" for digit, p in enumerate(row.tolist()))
            print(f"{path}: {int(row.argmax())}   ({odds})")
    for line in unreadable:
        print(line, file=sys.stderr)
    return 1 if unreadable or not files else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except UsageError as error:
        raise SystemExit(str(error)) from None
