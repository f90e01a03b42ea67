"""Tiny IDX data sets in torchvision's layout, written by the tests themselves (never MNIST)."""

from __future__ import annotations

import gzip
import runpy
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mnist_mlp.config.settings import plain

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path: Path, array: np.ndarray, packed: bool = False) -> None:
    """IDX: two zero bytes, type 0x08 (ubyte), the number of dims, each dim big-endian, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if packed:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def tiny_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 images: class k is a bright bar in row band k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, 60, (count, 28, 28))
    for image, label in zip(images, labels, strict=True):
        image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels


def write_dataset(
    root: Path, dataset: str = "MNIST", train: int = 600, test: int = 200, packed: bool = False
) -> Path:
    raw = root / dataset / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for is_train, count in ((True, train), (False, test)):
        images, labels = tiny_images(count, seed=int(is_train))
        image_file, label_file = FILES[is_train]
        write_idx(raw / image_file, images, packed)
        write_idx(raw / label_file, labels, packed)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"))


# Small and quick: the tiny data set has 600 training images.
TINY = ["data.val_size=100", "epochs=2", "batch_size=32", "model.hidden_sizes=[32]"]


def compose_train(*overrides: str) -> DictConfig:
    """conf/train.yaml composed as Hydra does it, with the tiny settings and `overrides`."""
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("train", overrides=[*TINY, *overrides])


def settings(group: str, *overrides: str, **values: object) -> dict:
    """A group's settings (data, model) as its class receives them: from the schema and conf/."""
    return plain(compose_train(*overrides)[group]) | values


@pytest.fixture
def make_cfg(data_root: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml as Hydra does, on the tiny data, with extra overrides."""
    return lambda *overrides: compose_train(f"data.root={data_root}", *overrides)


def run_main(*args: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command line through train.py's Hydra main, in this process (no second import)."""
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python train.py ...` as a user types it, from `cwd`, in a new process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
