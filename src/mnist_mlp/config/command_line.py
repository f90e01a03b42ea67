"""The command line as Hydra should read it, a sweep job's folder name, and where a run keeps
what a resume starts from."""

from __future__ import annotations

from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

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


def swept_keys(sweep_dir: Path) -> set[str]:
    """The keys a sweep varies: its command line's sweeps (`lr=0.1,0.2`, `range(...)`) and its
    sweeper's params, from the multirun.yaml Hydra writes when the sweep starts (none without)."""
    saved = sweep_dir / "multirun.yaml"
    if not saved.is_file():
        return set()
    config = OmegaConf.load(saved)
    given = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return {o.key_or_group for o in given if o.is_sweep_override()} | set(params)


def run_name(job_overrides: list[str], excluded: list[str], sweep_dir: str) -> str:
    """A sweep job's folder name after its number (conf/train.yaml's hydra.sweep.subdir): its
    overrides as Hydra's override_dirname writes them, but the keys the sweep varies first, so
    that TensorBoard's run names, cut short in its lists, start with what differs."""
    parsed = OverridesParser.create().parse_overrides(list(job_overrides))
    varying = swept_keys(Path(sweep_dir))
    items = [
        (o.key_or_group not in varying, f"{o.get_key_element()}={o.get_value_element_as_str()}")
        for o in parsed
        if o.key_or_group not in excluded
    ]
    return ",".join(item for _, item in sorted(items))


OmegaConf.register_new_resolver("run_name", run_name, replace=True)
