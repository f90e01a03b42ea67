"""Hydra's task function: check the settings, train one run, turn failures into sentences.

Torch and Lightning are imported only once the settings have passed their checks, so a bad
setting is refused at once.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_mlp.config.checks import check_config, resume_differences
from mnist_mlp.config.schema import LrSchedule
from mnist_mlp.console import quiet_lightning
from mnist_mlp.errors import Diverged, Interrupted, UsageError
from mnist_mlp.run.folder_lock import claim, release

log = logging.getLogger(__name__)


def resumed_run_dir(cfg: DictConfig) -> Path:
    """The run dir that ckpt_path belongs to, after checking this run's settings match it."""
    if not Path(cfg.ckpt_path).is_file():
        raise UsageError(
            f"ckpt_path={cfg.ckpt_path} is not a file; give <run dir>/checkpoints/last.ckpt."
        )
    run_dir = Path(cfg.ckpt_path).resolve().parent.parent
    saved_file = run_dir / ".hydra" / "config.yaml"
    if not saved_file.is_file():
        raise UsageError(
            f"ckpt_path={cfg.ckpt_path} is not inside a run dir (no {saved_file}); "
            "give <run dir>/checkpoints/last.ckpt."
        )
    saved = OmegaConf.load(saved_file)
    differences = resume_differences(saved, cfg)
    if differences:
        key, then, now = differences[0]
        raise UsageError(
            f"ckpt_path belongs to a run trained with {key}={then!r}, but this run says "
            f"{key}={now!r}; resume with that run's settings ({run_dir}/.hydra/overrides.yaml)."
        )
    if cfg.epochs != saved.epochs and cfg.model.lr_schedule != LrSchedule.constant:
        raise UsageError(
            f"epochs={cfg.epochs} would extend a run whose {cfg.model.lr_schedule} lr schedule "
            f"was planned over epochs={saved.epochs}, and no straight run of {cfg.epochs} epochs "
            f"took those steps; resume with epochs={saved.epochs}, or start a new run with "
            f"epochs={cfg.epochs} (only model.lr_schedule=constant runs can be extended)."
        )
    return run_dir


def run(cfg: DictConfig) -> float:
    """One run, its val/acc returned for sweepers (nan if it failed).

    A run stops with one sentence and exit 1 on bad settings or data or a diverged loss, or
    exit 130 (Ctrl-C) or 143 (SIGTERM). In a multirun a job that fails or diverges is recorded
    in its metrics.json and the sweep goes on; the sweep summary shows it.
    """
    hydra_config = HydraConfig.get()
    sweeping = hydra_config.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_config.runtime.output_dir)
    start = time.perf_counter()
    try:
        check_config(cfg)
        if cfg.ckpt_path is not None:
            resumed = resumed_run_dir(cfg)
            claim(resumed, "the run dir of ckpt_path")  # one resume at a time
            run_dir = resumed
            log.info(f"Resuming {run_dir} from {cfg.ckpt_path}")
        quiet_lightning()
        from mnist_mlp.run.fit import fit_and_test

        return fit_and_test(cfg, run_dir)["val/acc"]
    except (UsageError, Diverged) as error:
        sys.stderr.write("\n")  # off the progress bar's line
        log.error(str(error))
        if not sweeping:
            raise SystemExit(1) from None
        if not (run_dir / "metrics.json").is_file():
            _record_failure(run_dir, cfg, start)
    except Interrupted as error:
        sys.stderr.write("\n")
        log.error(str(error))
        raise SystemExit(error.exit_code) from None
    except Exception as error:
        if not sweeping:
            raise
        # Its own words, first line (e.g. a DDP peer that died: "Connection reset by peer").
        said = (str(error).strip().splitlines() or [""])[0][:300]
        last = run_dir / "checkpoints" / "last.ckpt"
        kept = f"; {last} is kept (ckpt_path= resumes it)" if last.is_file() else ""
        log.exception(f"This job failed ({type(error).__name__}: {said}){kept}; the sweep goes on.")
        _record_failure(run_dir, cfg, start)
    finally:
        if cfg.ckpt_path is not None:
            release(run_dir)
    return math.nan


def _record_failure(run_dir: Path, cfg: DictConfig, start: float) -> None:
    from mnist_mlp.run.record import write_metrics

    write_metrics(run_dir, cfg, "failed", {}, start)
