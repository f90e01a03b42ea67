"""MNIST and Fashion-MNIST as normalised tensors in memory, cut into mini-batches.

torchvision parses the IDX files once; after that every batch is a slice of one tensor
that already lives on the training device, so no per-sample Python work happens while training.
"""

from __future__ import annotations

import functools
import gzip
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from lightning import LightningDataModule
from torchvision import datasets

from mnist_mlp.errors import UsageError

DATASETS = {"MNIST": datasets.MNIST, "FashionMNIST": datasets.FashionMNIST}


class EpochPermutation:
    """A fresh, seeded order of the training images each epoch.

    Lightning calls `set_epoch` before every epoch (as it does for a DataLoader's sampler), so the
    order depends only on (seed, epoch): a resumed run sees the same batches as an unbroken one.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.size // self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """This process's share: with DDP each of world_size processes takes every world_size-th
        image of the same order (the remainder is left out, so all take as many steps)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        return order[self.rank : self.size - self.size % self.world_size : self.world_size]


class TensorBatches:
    """Mini-batches sliced from (images, labels); reshuffled each epoch when given a sampler."""

    batch_sampler = None  # read by Lightning, as on a DataLoader

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        sampler: EpochPermutation | None = None,
    ) -> None:
        self.images, self.labels, self.batch_size, self.sampler = (
            images,
            labels,
            batch_size,
            sampler,
        )

    def __len__(self) -> int:
        examples = len(self.sampler) if self.sampler else len(self.labels)
        return math.ceil(examples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.sampler is None:
            for start in range(0, len(self.labels), self.batch_size):
                end = start + self.batch_size
                yield self.images[start:end], self.labels[start:end]
            return
        # Each batch is gathered when it is due rather than all at once: a shuffled copy of the
        # whole set is 170 MB of freshly touched memory per epoch, which cost 0.1-1 s on our
        # test VMs (more than the epoch's SGD); a batch reuses the memory its predecessor freed.
        order = self.sampler.order().to(self.images.device)
        for index in order.split(self.batch_size):
            yield self.images[index], self.labels[index]


def raw_files(dataset: str) -> list[str]:
    """The four IDX file names torchvision expects under <root>/<dataset>/raw/."""
    return [Path(url).name.removesuffix(".gz") for url, _md5 in DATASETS[dataset].resources]


def ensure_raw_files(root: Path, dataset: str, download: bool) -> None:
    """Make the four IDX files present under root, from .gz copies or a download, or say how."""
    raw = root / dataset / "raw"
    missing = [name for name in raw_files(dataset) if not (raw / name).is_file()]
    for name in list(missing):
        packed = raw / f"{name}.gz"
        if packed.is_file():
            _gunzip(packed, raw / name)
            missing.remove(name)
    if not missing:
        return
    if download and _try_download(root, raw, dataset):
        return
    raise UsageError(
        f"{dataset} files are missing from {raw}/: {', '.join(missing)}"
        f"{'' if download else ' (download=false)'}. "
        f"Place the four IDX files {', '.join(raw_files(dataset))} there (plain or .gz), "
        f"or set data.root to the folder that holds {dataset}/raw/."
    )


def _gunzip(packed: Path, target: Path) -> None:
    # Write beside the target and rename, so an interrupted run never leaves a half file behind.
    partial = target.with_name(target.name + ".partial")
    try:
        with gzip.open(packed, "rb") as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink)
    except (OSError, EOFError) as error:
        partial.unlink(missing_ok=True)
        raise UsageError(
            f"{packed} does not decompress ({error}); replace it with a good copy."
        ) from None
    partial.replace(target)


def _try_download(root: Path, raw: Path, dataset: str) -> bool:
    before = set(raw.iterdir()) if raw.is_dir() else set()
    try:
        DATASETS[dataset](str(root), train=True, download=True)
        return True
    except Exception:  # noqa: BLE001 - any network failure means "not downloadable here"
        # Remove whatever the failed download wrote, so no later run mistakes it for data.
        for path in set(raw.iterdir()) - before if raw.is_dir() else ():
            path.unlink(missing_ok=True)
        return False


# IDX headers: 0x0803 = unsigned bytes in 3 dimensions (images), 0x0801 = in 1 (labels).
IMAGES_MAGIC, LABELS_MAGIC, IMAGE_SHAPE = 0x0803, 0x0801, (28, 28)


def _idx_shape(path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions an IDX file's header declares, after checking them against its size."""
    ndim = magic & 0xFF
    with open(path, "rb") as file:
        header = file.read(4 + 4 * ndim)
    fix = "replace it with a good copy of the file"
    if len(header) < 4 + 4 * ndim or int.from_bytes(header[:4], "big") != magic:
        raise UsageError(
            f"{path} is not an IDX file of this kind (expected header 0x{magic:08x}); {fix}."
        )
    shape = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected, actual = len(header) + math.prod(shape), path.stat().st_size
    if actual != expected:
        raise UsageError(
            f"{path} holds {actual} bytes but its header promises {expected} "
            f"(shape {'x'.join(map(str, shape))}): it is truncated or corrupt; {fix}."
        )
    return shape


def check_raw_files(root: Path, dataset: str) -> int:
    """Check the four IDX files' headers and sizes; return the number of training images."""
    raw = root / dataset / "raw"
    train_images, train_labels, test_images, test_labels = (raw / f for f in raw_files(dataset))
    counts = []
    for images, labels in ((train_images, train_labels), (test_images, test_labels)):
        image_shape = _idx_shape(images, IMAGES_MAGIC)
        label_shape = _idx_shape(labels, LABELS_MAGIC)
        if image_shape[1:] != IMAGE_SHAPE:
            raise UsageError(
                f"{images} holds images of {image_shape[1:]}, not 28x28 pixels; "
                "replace it with the dataset's own file."
            )
        if image_shape[0] != label_shape[0]:
            raise UsageError(
                f"{images} holds {image_shape[0]} images but {labels} holds {label_shape[0]} "
                "labels; the two files come from different copies: replace them as a pair."
            )
        counts.append(image_shape[0])
    return counts[0]


def load_split(root: Path, dataset: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x 28 x 28) and labels (int64, N) of the official train or test split."""
    parsed = DATASETS[dataset](str(root), train=train, download=False)
    return parsed.data, parsed.targets


Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


# Kept for the next run in the same process: the jobs of a multirun skip parsing and normalising.
@functools.lru_cache(maxsize=1)
def normalised_splits(
    root: Path, dataset: str, val_size: int, seed: int, device: str, stamp: tuple
) -> tuple[Splits, tuple[float, float]]:
    """The seeded train/val split and the test split, normalised, on the device; (mean, std)."""
    train_images, train_labels = load_split(root, dataset, train=True)
    test_images, test_labels = load_split(root, dataset, train=False)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_labels), generator=generator)
    val_index, train_index = order[:val_size], order[val_size:]
    # Normalise with the statistics of the training split only.
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
    """The official 60k training images split seeded into train/val, and the official 10k test."""

    def __init__(
        self,
        dataset: str,
        root: str,
        download: bool,
        val_size: int,
        batch_size: int,
        batches_per_step: int,
        eval_batch_size: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.dataset, self.root, self.download = dataset, Path(root), download
        self.val_size, self.batch_size, self.eval_batch_size = val_size, batch_size, eval_batch_size
        self.batches_per_step = batches_per_step
        self.seed = seed
        self.splits: Splits = {}
        self.mean = self.std = math.nan  # of the training split's pixels in [0, 1], after setup

    def prepare_data(self) -> None:
        ensure_raw_files(self.root, self.dataset, self.download)
        training_images = check_raw_files(self.root, self.dataset)
        if self.val_size >= training_images:
            raise UsageError(
                f"data.val_size={self.val_size} is not allowed: the training set has "
                f"{training_images} images, so use at most {training_images - 1}."
            )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        raw = self.root / self.dataset / "raw"
        # The files' sizes and times, so a cached copy is never used for files that changed.
        stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(raw.iterdir()))
        self.splits, (self.mean, self.std) = normalised_splits(
            self.root.resolve(), self.dataset, self.val_size, self.seed, str(device), stamp
        )

    def state_dict(self) -> dict[str, float]:
        """Saved in every checkpoint: predict normalises new images the same way."""
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.std = state["mean"], state["std"]

    def train_dataloader(self) -> TensorBatches:
        """Slices of batches_per_step mini-batches: the model takes one SGD step per mini-batch.

        Lightning's own work per step (hooks, progress, logging) costs more than a small MLP's
        SGD step on a CPU; handing it several mini-batches at once divides that cost.
        """
        images, labels = self.splits["train"]
        rank, world_size = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
        return TensorBatches(
            images,
            labels,
            self.batch_size * self.batches_per_step,
            EpochPermutation(len(labels), self.seed, rank, world_size),
        )

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["val"], self.eval_batch_size)

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["test"], self.eval_batch_size)
