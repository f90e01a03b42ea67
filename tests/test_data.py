"""The data module on tiny IDX files: torchvision parsing, split, batching, offline behaviour."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets

from mnist_mlp.errors import UsageError
from mnist_mlp.training.data import Interval, Intervals, MNISTDataModule, epoch_order
from mnist_mlp.training.idx_files import ensure_raw_files
from tests.conftest import settings, write_dataset, write_idx


def datamodule(root: Path, **overrides) -> MNISTDataModule:
    """A data module set up as Lightning does it: prepare_data, then setup."""
    dm = MNISTDataModule(
        **settings("data", f"data.root={root}", "data.download=false", "seed=0", **overrides)
    )
    dm.prepare_data()
    dm.setup()
    return dm


def test_splits_are_seeded_normalised_and_complete(data_root: Path) -> None:
    first, again, other = (datamodule(data_root, seed=s) for s in (0, 0, 1))
    train_images, train_labels = first.splits["train"]
    assert train_images.shape == (500, 28, 28) and train_images.dtype == torch.float32
    assert len(first.splits["val"][1]) == 100 and len(first.splits["test"][1]) == 200
    assert abs(train_images.mean().item()) < 1e-4 and abs(train_images.std().item() - 1) < 1e-3
    assert torch.equal(train_labels, again.splits["train"][1])
    assert not torch.equal(train_labels, other.splits["train"][1])
    # Train and val together are exactly the 600 official training labels.
    official = datasets.MNIST(str(data_root), train=True).targets
    joined = torch.cat([train_labels, first.splits["val"][1]])
    assert torch.equal(joined.sort().values, official.sort().values)


def test_nielsens_split_and_inputs_the_files_last_images_and_pixels_in_0_1(
    data_root: Path,
) -> None:
    dm = datamodule(data_root, val_split="last", inputs="unit")
    official = datasets.MNIST(str(data_root), train=True)
    assert torch.equal(dm.splits["val"][1], official.targets[-100:])
    assert torch.equal(dm.splits["train"][1], official.targets[:-100])  # in the file's order
    assert torch.equal(dm.splits["train"][0], official.data[:-100].float() / 255)
    assert dm.state_dict() == {"mean": 0.0, "std": 1.0}  # predict scales new images the same


def test_batches_cover_every_image_once_in_a_fresh_seeded_order_each_epoch() -> None:
    images = torch.arange(100.0).view(100, 1)
    epoch_number = 0

    def steps(per_step: int) -> Intervals:
        order = lambda: epoch_order(100, seed=3, epoch=epoch_number)  # noqa: E731
        return Intervals(images, torch.arange(100), 32, order, log_every=per_step)

    def mini_batches(per_step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [mini_batch for step in steps(per_step) for mini_batch in step]

    def epoch(number: int) -> torch.Tensor:
        nonlocal epoch_number
        epoch_number = number
        return torch.cat([labels for _, labels in mini_batches(1)])

    first = epoch(0)
    assert sorted(first.tolist()) == list(range(100))
    assert [len(labels) for _, labels in mini_batches(1)] == [32, 32, 32, 4]
    assert torch.equal(first, epoch(0)) and not torch.equal(first, epoch(1))
    # Grouped into Lightning steps, the same mini-batches in the same order.
    assert (len(steps(1)), len(steps(3))) == (4, 2)
    assert all(
        torch.equal(one[1], grouped[1])
        for one, grouped in zip(mini_batches(1), mini_batches(3), strict=True)
    )
    for image_batch, label_batch in mini_batches(3):  # images travel with their labels
        assert torch.equal(image_batch.view(-1).long(), label_batch)


def test_gzipped_files_are_accepted(tmp_path: Path) -> None:
    write_dataset(tmp_path, packed=True)
    dm = datamodule(tmp_path)
    assert len(dm.splits["test"][1]) == 200


def test_fashion_mnist_uses_the_same_code(tmp_path: Path) -> None:
    write_dataset(tmp_path, dataset="FashionMNIST")
    dm = datamodule(tmp_path, dataset="FashionMNIST")
    assert len(dm.splits["train"][1]) == 500


def test_missing_files_name_the_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        ensure_raw_files(tmp_path, "MNIST", download=False)
    message = str(caught.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in message


def test_failed_download_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_download(self: datasets.MNIST) -> None:
        # What a dropped connection leaves: half an archive in the raw folder.
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        (Path(self.raw_folder) / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b half")
        raise OSError("connection reset")

    monkeypatch.setattr(datasets.MNIST, "download", broken_download)
    with pytest.raises(UsageError, match=r"missing.*a download was tried and failed.*Offline"):
        ensure_raw_files(tmp_path, "MNIST", download=True)
    assert list((tmp_path / "MNIST" / "raw").iterdir()) == []


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _break_magic(path: Path) -> None:
    path.write_bytes(b"\x00\x00\x08\x09" + path.read_bytes()[4:])


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _fewer_labels(path: Path) -> None:
    write_idx(path, np.zeros(599, dtype=np.uint8))


def _label_out_of_range(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8 + 7] = 200  # the label at index 7, after the 8-byte header
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "damage", "says"),
    [
        ("train-images-idx3-ubyte", _break_magic, "not an IDX file"),
        ("t10k-images-idx3-ubyte", _truncate, "truncated or corrupt"),
        ("train-labels-idx1-ubyte", _fewer_labels, "holds 599 labels"),
        ("t10k-labels-idx1-ubyte", _label_out_of_range, "holds label 200 at index 7"),
    ],
)
def test_damaged_files_are_named_and_left_alone(
    tmp_path: Path, name: str, damage: Callable[[Path], None], says: str
) -> None:
    write_dataset(tmp_path)
    damage(tmp_path / "MNIST" / "raw" / name)
    before = _snapshot(tmp_path)
    with pytest.raises(UsageError, match=says) as caught:
        datamodule(tmp_path)
    assert name in str(caught.value) and "replace" in str(caught.value)
    assert _snapshot(tmp_path) == before  # nothing deleted or overwritten


def test_a_gz_that_does_not_decompress_is_named_and_kept(tmp_path: Path) -> None:
    write_dataset(tmp_path, packed=True)
    packed = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:20])  # cut short, as a dropped download leaves it
    with pytest.raises(UsageError, match="does not decompress") as caught:
        datamodule(tmp_path)
    assert str(packed) in str(caught.value)
    assert packed.is_file() and not packed.with_suffix("").exists()
    assert not list(packed.parent.glob("*.partial"))


def test_val_size_must_leave_training_images(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    with pytest.raises(UsageError, match="data.val_size=600 .* at most 599"):
        datamodule(tmp_path, val_size=600)


def test_an_empty_gz_leaves_no_empty_file_behind(tmp_path: Path) -> None:
    write_dataset(tmp_path, packed=True)
    packed = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    packed.write_bytes(gzip.compress(b""))
    with pytest.raises(UsageError, match=f"{packed} decompresses to nothing"):
        datamodule(tmp_path)
    assert not packed.with_suffix("").exists() and not list(packed.parent.glob("*.partial"))


def test_a_plain_file_older_than_its_gz_is_unpacked_again(tmp_path: Path) -> None:
    """A damaged plain copy, then a good .gz put beside it: the .gz wins."""
    write_dataset(tmp_path, packed=True)
    raw = tmp_path / "MNIST" / "raw"
    plain = raw / "train-labels-idx1-ubyte"
    plain.write_bytes(b"stale")
    packed = raw / "train-labels-idx1-ubyte.gz"
    os.utime(plain, ns=(1, 1))  # older than the .gz
    datamodule(tmp_path)
    assert plain.read_bytes() == gzip.decompress(packed.read_bytes())


def test_a_stale_plain_file_in_a_read_only_folder_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dataset(tmp_path, packed=True)
    datamodule(tmp_path)  # unpacks them all
    raw = tmp_path / "MNIST" / "raw"
    plain = raw / "train-labels-idx1-ubyte"
    plain.write_bytes(b"stale")
    os.utime(plain, ns=(1, 1))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as if read-only (even for root)
    with pytest.raises(UsageError, match=f"{plain} is older than .* delete {plain}"):
        datamodule(tmp_path)


def test_a_folder_that_cannot_be_written_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A good .gz in a read-only folder (as root, chmod does not stop writes: refuse them here)."""
    write_dataset(tmp_path, packed=True)
    raw = tmp_path / "MNIST" / "raw"
    before = {path.name: path.read_bytes() for path in raw.iterdir()}

    def refuse_writes(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr("mnist_mlp.training.idx_files.open", refuse_writes, raising=False)
    with pytest.raises(UsageError, match=f"{raw} is not writable.*set data.root=<somewhere>"):
        datamodule(tmp_path)
    assert {path.name: path.read_bytes() for path in raw.iterdir()} == before


def test_a_root_that_is_a_file_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(UsageError, match="data.root=.*/data is a file, not a folder"):
        datamodule(tmp_path / "data")


def test_a_batch_as_large_as_the_training_set_is_named_full_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_dataset(tmp_path)
    with caplog.at_level(logging.INFO):
        datamodule(tmp_path, batch_size=1000)
    assert "covers all 500 training images: each SGD step is full-batch gradient" in caplog.text


@pytest.mark.parametrize("count", [12, 10])  # whole mini-batches, and a shorter last one
def test_the_last_mini_batch_alone_is_the_last_one_iterated(count: int) -> None:
    images, labels = torch.arange(40.0).view(20, 2), torch.arange(20)
    steps = Interval(images, labels, torch.randperm(20)[:count], batch_size=lambda: 4)
    *_, (last_images, last_labels) = steps
    images_alone, labels_alone = steps.last()
    assert torch.equal(images_alone, last_images) and torch.equal(labels_alone, last_labels)
