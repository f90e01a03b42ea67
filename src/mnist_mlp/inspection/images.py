"""An image file as the network would have seen it, prepared as the checkpoint's data set's
images were: any size, grayscale or colour, dark-on-light or light-on-dark, transparent or not."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# An image whose pixels span less than this share of black to white holds no digit to read.
BLANK_CONTRAST = 0.1


def grayscale(image: Image.Image) -> np.ndarray:
    """The image's gray levels in [0, 1], transparent pixels first laid over white, as a viewer
    shows them (drawing tools save a digit in the alpha channel over transparent black)."""
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if transparent:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def light_on_dark(gray: np.ndarray) -> np.ndarray:
    """Both data sets' images are light on dark: a light background (its edge) is inverted."""
    edge = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return 1 - gray if edge.mean() > 0.5 else gray


def trimmed(gray: np.ndarray, level: float) -> np.ndarray | None:
    """The bounding box of the pixels above `level` times the brightest; None if there are none."""
    ink = gray > level * gray.max()
    if not ink.any():
        return None
    rows, columns = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return gray[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def fitted(part: np.ndarray, edge: int) -> np.ndarray:
    """The part resized, keeping its aspect, so that its longest side is `edge` pixels."""
    scale = edge / max(part.shape)
    size = (max(1, round(part.shape[1] * scale)), max(1, round(part.shape[0] * scale)))
    image = Image.fromarray((part * 255).round().astype(np.uint8)).resize(size, Image.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255


def placed(part: np.ndarray, top: int, left: int) -> torch.Tensor:
    """The part on a black 28x28 canvas, its top left corner at (top, left)."""
    canvas = np.zeros((28, 28), dtype=np.float32)
    canvas[top : top + part.shape[0], left : left + part.shape[1]] = part
    return torch.from_numpy(canvas)


def mnist_like(gray: np.ndarray) -> torch.Tensor:
    """28x28 floats in [0, 1] as MNIST's digits were made: light on dark, the digit fitted into
    20x20 by its aspect, its centre of mass moved to the middle of 28x28."""
    digit = trimmed(light_on_dark(gray), 0.5)
    if digit is None:
        return torch.zeros(28, 28)
    digit = fitted(digit, 20)
    weights = digit / max(digit.sum(), 1e-6)
    centre_y = (weights.sum(1) * np.arange(digit.shape[0])).sum()
    centre_x = (weights.sum(0) * np.arange(digit.shape[1])).sum()
    top = int(np.clip(round(13.5 - centre_y), 0, 28 - digit.shape[0]))
    left = int(np.clip(round(13.5 - centre_x), 0, 28 - digit.shape[1]))
    return placed(digit, top, left)


def fashion_like(gray: np.ndarray) -> torch.Tensor:
    """28x28 floats in [0, 1] as Fashion-MNIST's were made: light on dark, the product trimmed to
    its bounding box, its longest side fitted to 28 and the box centred (no centre of mass)."""
    item = trimmed(light_on_dark(gray), 0.05)
    if item is None:
        return torch.zeros(28, 28)
    item = fitted(item, 28)
    return placed(item, (28 - item.shape[0]) // 2, (28 - item.shape[1]) // 2)


PREPARED_AS = {"MNIST": mnist_like, "FashionMNIST": fashion_like}
