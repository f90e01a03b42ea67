"""What a user sees on the console: each line once, and none they cannot act on.

Lightning's umbrella package gives its logger a console handler of its own while its records also
reach the root logger's (Hydra's, which writes train.log too), so every Lightning line came twice;
its own is removed. The rest are notices that point at nothing a user of this project can change.
"""

from __future__ import annotations

import functools
import logging
import warnings

# Lightning's own lines that say nothing here: its advertisement, and (for predict and evaluate,
# which never train) which accelerators it found.
NOTICES = ("💡 Tip",)
DEVICE_NOTICES = ("GPU available", "TPU available", "HPU available")


@functools.cache  # once per process, however many jobs or calls
def quiet_lightning(device_lines: bool = True) -> None:
    import lightning

    lightning_logger = logging.getLogger(lightning.__name__)
    if logging.getLogger().handlers:  # where the records also reach the root's handlers
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
    hidden = NOTICES if device_lines else NOTICES + DEVICE_NOTICES
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not record.getMessage().startswith(hidden)
    )
    # Lightning's own code calls a torch API that torch has deprecated.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # On a Slurm login node: runs here are meant to run here (hydra/launcher=slurm submits jobs).
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
    # A resumed run writes into its own checkpoints/ folder by design, and keeps its metrics.csv
    # rows (run/build.py, keep_csv_rows), which Lightning's CSV writer warns it deletes.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not")
