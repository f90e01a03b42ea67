"""The command line as Hydra should read it, and where a run keeps what a resume starts from."""

from __future__ import annotations

from pathlib import Path

# Config groups a run can do without. Hydra 1.3 refuses `group=null` on the command line (a
# ValueError traceback) and drops a group with `~group`; `null` is what users type.
OPTIONAL_GROUPS = ("logger", "experiment", "debug", "hparams_search")


def dropped_groups(argv: list[str]) -> list[str]:
    """The command line with each `<optional group>=null` written as Hydra's `~<group>`."""
    return [
        f"~{arg.removesuffix('=null')}" if arg.removesuffix("=null") in OPTIONAL_GROUPS else arg
        for arg in argv
    ]


def last_checkpoint(run_dir: Path) -> Path:
    """Where a run keeps the state a resume starts from (training/checkpoints.py writes it)."""
    return run_dir / "checkpoints" / "last.ckpt"


def resume_in_place(argv: list[str]) -> list[str]:
    """The command line of a run resumed from <run dir>/checkpoints/last.ckpt, made to continue
    in that run dir: Hydra then logs into its train.log and creates no new folder, nor a new
    .hydra/ (the run's own config stays, for the next resume's comparison)."""
    if "-m" in argv or "--multirun" in argv or any(a.startswith("hydra.run.dir=") for a in argv):
        return argv
    given = [arg.split("=", 1)[1] for arg in argv if arg.startswith("ckpt_path=")]
    run_dir = Path(given[-1]).resolve().parent.parent if given else None
    if run_dir is None or not (run_dir / ".hydra" / "config.yaml").is_file():
        return argv  # run.py says what is wrong with ckpt_path
    return [*argv, f"hydra.run.dir='{run_dir}'", "hydra.output_subdir=null"]
