"""A run or sweep folder belongs to one process at a time: two runs never write into one.

The claim is an OS lock on <folder>/.claimed (flock): it is taken before anything is written,
and the OS drops it when the process ends, however it ends, so no stale claim is ever left.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mnist_mlp.errors import UsageError

_held: dict[Path, int] = {}  # folder -> the open, locked .claimed file
# How launchers (Lightning's own, torchrun, Slurm, jsrun) number the processes of one run.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def first_process() -> bool:
    """False in the other processes of a distributed run: they write into the first one's folder
    (Lightning's DDP launcher starts them with the same command line)."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def claim(folder: Path, key: str) -> None:
    """Hold `folder` for this process, or refuse with one sentence if another process holds it."""
    folder = folder.resolve()
    if folder in _held or not first_process():
        return
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / ".claimed", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise UsageError(
            f"{key}={folder} is in use by another run that is still going; wait for it to end, "
            f"or choose another {key}."
        ) from None
    _held[folder] = descriptor


def release(folder: Path) -> None:
    descriptor = _held.pop(folder.resolve(), None)
    if descriptor is not None:
        os.close(descriptor)  # closing the file drops the lock
