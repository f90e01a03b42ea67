"""last.ckpt after every training epoch: the state a resume starts from, never half written."""

from __future__ import annotations

from pathlib import Path

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


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
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            partial.replace(last)
