"""MNIST and Fashion-MNIST as tensors in memory (data.inputs), cut into mini-batches.

torchvision parses the IDX files once; after that every batch is a slice of one tensor
that already lives on the training device, so no per-sample Python work happens while training.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule

from mnist_mlp.config.schema import AUTO, Inputs, ValSplit
from mnist_mlp.errors import UsageError
from mnist_mlp.training.idx_files import DATASETS, check_raw_files, ensure_raw_files

log = logging.getLogger(__name__)


def epoch_order(
    size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """A fresh, seeded order of the training images for each epoch: it depends only on (seed,
    epoch), so a resumed run sees the same batches as an unbroken one. With DDP each of
    world_size processes takes every world_size-th image of the same order (the remainder is
    left out, so all take as many steps)."""
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(size, generator=generator)
    return order[rank : size - size % world_size : world_size]


class TensorBatches:
    """Batches sliced from (images, labels) in turn: validation and test."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.labels), self.batch_size):
            end = start + self.batch_size
            yield self.images[start:end], self.labels[start:end]


class Interval:
    """One Lightning step's batch: the next mini-batches of the epoch's order, each gathered from
    the training tensors only when its SGD step comes (so it is still in the cache when the step
    reads it), by index_select, which is faster than indexing on a CPU. Their size is read when
    the interval starts: batch_size=auto may have changed it since the interval was cut."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
        batch_size: Callable[[], int],
    ) -> None:  # fmt: skip
        self.images, self.labels, self.index, self.batch_size = images, labels, index, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for part in self.index.split(self.batch_size()):
            yield self.images.index_select(0, part), self.labels.index_select(0, part)

    def last(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The last mini-batch alone (iterating would gather every one)."""
        part = self.index[(len(self) - 1) * self.batch_size() :]
        return self.images.index_select(0, part), self.labels.index_select(0, part)


class Intervals:
    """An epoch of training, in the order that `order()` gives when the epoch starts, cut into
    Intervals of `log_every` mini-batches each, or with batch_size=auto of `interval_examples`
    examples each. Then `batch_size` may change between intervals (training/auto_batch.py sets
    it): each interval is still the next examples of the order, so an epoch is still one pass
    over every training example."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        order: Callable[[], torch.Tensor],
        log_every: int = 1,
        interval_examples: int | None = None,
    ) -> None:
        self.images, self.labels, self.order = images, labels, order
        self.batch_size = batch_size  # of the mini-batches of the intervals to come
        self.interval_examples = interval_examples or batch_size * log_every
        self.examples = len(order())  # per epoch (with DDP, this process's share)

    def __len__(self) -> int:
        return math.ceil(self.examples / self.interval_examples)

    @property
    def mini_batches(self) -> int:
        """SGD steps in a whole epoch at the batch size now in force."""
        return math.ceil(self.examples / self.batch_size)

    def __iter__(self) -> Iterator[Interval]:
        order = self.order().to(self.images.device)
        for index in order.split(self.interval_examples):
            yield Interval(self.images, self.labels, index, lambda: self.batch_size)


def load_split(root: Path, dataset: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x 28 x 28) and labels (int64, N) of the official train or test split."""
    parsed = DATASETS[dataset](str(root), train=train, download=False)
    return parsed.data, parsed.targets


Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


# Kept for the next run in the same process: the jobs of a multirun skip parsing and scaling.
@functools.lru_cache(maxsize=1)
def prepared_splits(
    root: Path, dataset: str, val_size: int, val_split: str, inputs: str, seed: int, device: str,
    stamp: tuple,
) -> tuple[Splits, tuple[float, float]]:  # fmt: skip
    """The train/val split and the test split, as the network sees them, on the device; the
    (mean, std) that a pixel/255 has been normalised with ((0, 1) for inputs=unit)."""
    train_images, train_labels = load_split(root, dataset, train=True)
    test_images, test_labels = load_split(root, dataset, train=False)
    count = len(train_labels)
    if val_split == ValSplit.last:  # the file's last val_size images; training keeps file order
        train_index, val_index = (
            torch.arange(count - val_size),
            torch.arange(count - val_size, count),
        )
    else:
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        val_index, train_index = order[:val_size], order[val_size:]
    mean, std = 0.0, 1.0
    if inputs == Inputs.normalised:  # with the statistics of the training split only
        scaled = train_images[train_index].float().div_(255)
        mean, std = scaled.mean().item(), scaled.std().item()

    def normalised(images: torch.Tensor) -> torch.Tensor:
        return images.to(device).float().div_(255).sub_(mean).div_(std)

    splits = {
        "train": (normalised(train_images[train_index]), train_labels[train_index].to(device)),
        "val": (normalised(train_images[val_index]), train_labels[val_index].to(device)),
        "test": (normalised(test_images), test_labels.to(device)),
    }
    return splits, (mean, std)


class MNISTDataModule(LightningDataModule):
    """The official 60k training images split into train/val (data.val_split), and the official
    10k test."""

    def __init__(self, **settings: Any) -> None:
        """settings: the fields of mnist_mlp.config.schema.DataConfig, by name."""
        super().__init__()
        self.save_hyperparameters(settings)  # restored by load_from_checkpoint (predict)
        hp = self.hparams
        self.dataset, self.root, self.seed = hp.dataset, Path(hp.root), hp.seed
        self.splits: Splits = {}
        self.mean = self.std = math.nan  # of the training split's pixels in [0, 1], after setup

    def prepare_data(self) -> None:
        ensure_raw_files(self.root, self.dataset, self.hparams.download)
        training_images = check_raw_files(self.root, self.dataset)
        if self.hparams.val_size >= training_images:
            raise UsageError(
                f"data.val_size={self.hparams.val_size} is not allowed: the training set has "
                f"{training_images} images, so use at most {training_images - 1}."
            )
        training_split = training_images - self.hparams.val_size
        if self.hparams.batch_size != AUTO and self.hparams.batch_size >= training_split:
            log.info(
                f"batch_size={self.hparams.batch_size} covers all {training_split} training "
                "images: each SGD step is full-batch gradient descent."
            )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        raw = self.root / self.dataset / "raw"
        # The files' sizes and times, so a cached copy is never used for files that changed.
        stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(raw.iterdir()))
        hp = self.hparams
        self.splits, (self.mean, self.std) = prepared_splits(
            self.root.resolve(), self.dataset, hp.val_size, hp.val_split, hp.inputs, self.seed,
            str(device), stamp,
        )  # fmt: skip

    def state_dict(self) -> dict[str, float]:
        """Saved in every checkpoint: predict normalises new images the same way."""
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.std = state["mean"], state["std"]

    def train_dataloader(self) -> Intervals:
        """Intervals of log_every mini-batches (batch_size=auto: of auto_batch.every_examples
        examples, from auto_batch.smallest on): one Lightning step each (training/model.py). A
        Trainer option that counts training batches (limit_train_batches, val_check_interval,
        overfit_batches, fast_dev_run) counts intervals; overfit_batches also keeps the same
        order every epoch."""
        images, labels = self.splits["train"]
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        fixed = trainer is not None and trainer.overfit_batches > 0

        def order() -> torch.Tensor:  # read when each epoch starts
            epoch = 0 if fixed or trainer is None else trainer.current_epoch
            return epoch_order(len(labels), self.seed, epoch, rank, world_size)

        hp = self.hparams
        if hp.batch_size == AUTO:
            auto = hp.auto_batch
            return Intervals(
                images, labels, auto["smallest"], order, interval_examples=auto["every_examples"]
            )
        return Intervals(images, labels, hp.batch_size, order, log_every=hp.log_every)

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["val"], self.hparams.eval_batch_size)

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["test"], self.hparams.eval_batch_size)
