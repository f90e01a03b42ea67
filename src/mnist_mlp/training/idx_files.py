"""The four IDX files of MNIST or Fashion-MNIST: found, unpacked or downloaded, and checked
before torchvision parses them, so a missing, stale or damaged file is named in one sentence."""

from __future__ import annotations

import gzip
import math
import os
import shutil
from pathlib import Path

from torchvision import datasets

from mnist_mlp.config.schema import Dataset
from mnist_mlp.errors import UsageError

DATASETS = {Dataset.MNIST: datasets.MNIST, Dataset.FashionMNIST: datasets.FashionMNIST}


def raw_files(dataset: str) -> list[str]:
    """The four IDX file names torchvision expects under <root>/<dataset>/raw/."""
    return [Path(url).name.removesuffix(".gz") for url, _md5 in DATASETS[dataset].resources]


def ensure_raw_files(root: Path, dataset: str, download: bool) -> None:
    """Make the four IDX files present under root, from .gz copies or a download, or say how."""
    if root.exists() and not root.is_dir():
        raise UsageError(
            f"data.root={root} is a file, not a folder; set data.root to the folder that holds "
            f"{dataset}/raw/."
        )
    raw = root / dataset / "raw"
    for name in raw_files(dataset):
        _refresh_stale(raw / name, raw / f"{name}.gz")
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
    tried = "a download was tried and failed" if download else "data.download=false"
    raise UsageError(
        f"{dataset} files are missing from {raw}/: {', '.join(missing)} ({tried}). "
        f"Place the four IDX files {', '.join(raw_files(dataset))} there (plain or .gz), "
        f"or set data.root to the folder that holds {dataset}/raw/ "
        "(docs/configuration.md: Offline data)."
    )


def _refresh_stale(plain: Path, packed: Path) -> None:
    """A plain IDX file older than the .gz beside it may be a stale copy (a good .gz put there
    later): unpack the .gz again, or, in a folder that cannot be written, compare the sizes
    (a .gz ends with its unpacked size) and say which file to delete if they differ."""
    if not (plain.is_file() and packed.is_file()):
        return
    if packed.stat().st_mtime_ns <= plain.stat().st_mtime_ns:
        return
    if os.access(plain.parent, os.W_OK):
        _gunzip(packed, plain)
        return
    with open(packed, "rb") as file:
        file.seek(-4, os.SEEK_END)
        unpacked_size = int.from_bytes(file.read(4), "little")  # modulo 2**32: these are smaller
    if unpacked_size != plain.stat().st_size:
        raise UsageError(
            f"{plain} is older than {packed.name} beside it and holds other data; delete "
            f"{plain} (or {packed}) so that the two agree."
        )


def _gunzip(packed: Path, target: Path) -> None:
    # Write beside the target and rename, so an interrupted run never leaves a half file behind.
    partial = target.with_name(target.name + ".partial")
    try:
        with gzip.open(packed, "rb") as source, open(partial, "wb") as sink:
            shutil.copyfileobj(source, sink)
    except PermissionError:
        raise UsageError(
            f"{packed.parent} is not writable, so {packed.name} cannot be unpacked beside itself; "
            "copy the four files into a folder <somewhere>/<dataset>/raw/ that is, and set "
            "data.root=<somewhere>."
        ) from None
    except (OSError, EOFError) as error:
        partial.unlink(missing_ok=True)
        raise UsageError(
            f"{packed} does not decompress ({error}); replace it with a good copy."
        ) from None
    if partial.stat().st_size == 0:  # never leave an empty file that looks like data
        partial.unlink()
        raise UsageError(f"{packed} decompresses to nothing; replace it with a good copy.")
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
        classes = len(DATASETS[dataset].classes)
        values = labels.read_bytes()[8:]  # after the 8-byte header
        if values and max(values) >= classes:
            index = next(i for i, value in enumerate(values) if value >= classes)
            raise UsageError(
                f"{labels} holds label {values[index]} at index {index}, but the labels of "
                f"{dataset} are 0 to {classes - 1}: it is corrupt; replace it with a good copy."
            )
        counts.append(image_shape[0])
    return counts[0]
