"""What the benchmarks share: where the repository is, the data arguments every one of them takes
(--data-root, --dataset, then Hydra overrides), and the project's config composed from them."""

from __future__ import annotations

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]


def parser_with_data(description: str) -> argparse.ArgumentParser:
    """An argument parser with --data-root (holding <dataset>/raw/) and --dataset."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-root", type=Path, default=ROOT / "data")
    parser.add_argument("--dataset", choices=["MNIST", "FashionMNIST"], default="MNIST")
    return parser


def data_overrides(args: argparse.Namespace) -> list[str]:
    return [f"data.root={args.data_root.resolve()}", f"data.dataset={args.dataset}"]


def project_config(args: argparse.Namespace, *overrides: str) -> DictConfig:
    """conf/train.yaml as `python train.py` composes it, on the benchmark's data."""
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("train", overrides=[*data_overrides(args), *overrides])
