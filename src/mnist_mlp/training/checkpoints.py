"""last.ckpt after every training epoch: the state a resume starts from, never half written."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint

from mnist_mlp.config.command_line import last_checkpoint
from mnist_mlp.errors import UsageError

Loaded = TypeVar("Loaded")


def loaded(path: Path, key: str, load: Callable[[], Loaded]) -> Loaded:
    """What `load` reads from a user-given checkpoint (with weights_only: tensors and plain values
    only, since unpickling anything else can run code), or one sentence naming the file."""
    try:
        return load()
    except pickle.UnpicklingError as error:
        reason = str(error).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise UsageError(
            f"{key}={path} holds more than tensors and plain values ({reason}); only "
            "checkpoints written by mnist-mlp are loaded."
        ) from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same sentence
        raise UsageError(
            f"{key}={path} is not a readable mnist-mlp checkpoint ({type(error).__name__}: "
            f"{error}); it may be truncated or damaged, or from an older version."
        ) from None


class LastCheckpoint(Checkpoint):
    """Writes <run dir>/checkpoints/last.ckpt at the end of every training epoch.

    A Checkpoint, so Lightning calls it after the model's own epoch-end hook (the lr schedule has
    stepped) and after the best-by-validation ModelCheckpoint (its state is the epoch's). The file
    is written beside the previous one and renamed over it, so a kill at any moment leaves a
    complete last.ckpt.
    """

    def on_train_epoch_end(self, trainer: Trainer, module: LightningModule) -> None:
        if trainer.fast_dev_run:  # Lightning's dry run saves nothing
            return
        last = last_checkpoint(Path(trainer.default_root_dir))
        partial = last.with_name(last.name + ".partial")
        # Every process takes part; the first one writes. The whole state, not weights only.
        try:
            trainer.save_checkpoint(partial, weights_only=False)
        except OSError:  # a full disk, a read-only folder: the previous last.ckpt stays whole
            partial.unlink(missing_ok=True)
            raise
        if trainer.is_global_zero:
            partial.replace(last)
