"""What the Slurm launcher knows of each job: the CPUs Slurm gave it, how its run ended, its
state in squeue, and what a cancelled job records."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.utils import filter_overrides
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


POLL_SECONDS = 5  # between squeue calls while the sweep waits (one call for all its jobs)
RUNNING = {"CONFIGURING", "RUNNING", "COMPLETING", "STAGE_OUT"}
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED"}
# Slurm's states of a job that ended (squeue lists them for MinJobAge, 300 s by default).
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL"}
ENDED |= {"OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


class RunNotOk(Exception):
    """Ends a job whose run did not finish ok, so Slurm records the job as FAILED."""


def cpus_per_task() -> int:
    """The CPUs Slurm gave each task: SLURM_CPUS_PER_TASK, or Slurm's default of one."""
    return int(os.environ.get("SLURM_CPUS_PER_TASK", "1"))


def quoted(path: Path) -> str:
    """A path as an override value: quoted, since job dirs hold '=', ',' and '['."""
    return f"'{path}'"


def run_status(job_dir: Path) -> str | None:
    """The status in a job's metrics.json, or None before it has one."""
    metrics_file = job_dir / "metrics.json"
    return json.loads(metrics_file.read_text())["status"] if metrics_file.is_file() else None


def error_sentence(job_dir: Path) -> str:
    """The last error the run logged (the sentence run.py gives, not submitit's), or ''."""
    log_file = job_dir / "train.log"
    if not log_file.is_file():
        return ""
    lines = log_file.read_text().splitlines()
    errors = [line for line in lines if "][mnist_mlp." in line and "][ERROR] - " in line]
    return errors[-1].split("][ERROR] - ", 1)[1] if errors else ""


def record_unfinished(job_dir: Path, overrides: list[str], state: str, job_id: str) -> str:
    """Mark a job that Slurm ended without a result in its metrics.json (written if the job never
    started, with its .hydra/overrides.yaml so the summary lists it); return its status."""
    status = "cancelled" if state == "CANCELLED" else "interrupted"
    metrics_file = job_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    metrics |= {"status": status, "slurm_state": state, "slurm_job_id": job_id}
    if not (job_dir / ".hydra" / "overrides.yaml").is_file():
        (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        saved = OmegaConf.create(filter_overrides(overrides))
        OmegaConf.save(saved, job_dir / ".hydra" / "overrides.yaml")
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    return status


def folder(config: DictConfig) -> Path:
    """A job's folder, from its composed config."""
    return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)


def slurm_states(array_id: str) -> dict[str, str] | None:
    """{job id: Slurm state} of an array's jobs, from squeue; None if squeue did not answer."""
    try:
        listing = subprocess.run(
            ["squeue", "--noheader", "--array", "--states=all", "--format=%i %T"]
            + [f"--jobs={array_id}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(line.split() for line in listing.splitlines() if line.strip())


def stop(submitit_handler: Any, number: int, frame: Any) -> None:
    """Slurm's signal before the time limit (or preemption), in a job: submitit saves the job to
    requeue (SlurmLauncher.checkpoint) and requeues it, or refuses when its max_num_timeout is
    spent. Either way training then stops at the end of its interval, every DDP process at the
    same one (mnist_mlp.run.stop_together), as it does on SIGTERM, so the run records what it
    kept (metrics.json `interrupted`, last.ckpt, the resume command). What it has to say is
    logged there too: a log call inside a signal handler can land in the middle of the
    interrupted code's own write to the same file, and is then lost ("reentrant call")."""
    from submitit.core.utils import UncompletedJobError

    from mnist_mlp.run.stop_together import ask_to_stop

    level, said = logging.INFO, None
    try:
        submitit_handler(number, frame)
    except SystemExit:  # submitit requeued the job and asks it to end
        level, said = logging.WARNING, "Slurm requeued this job: it resumes from its last.ckpt."
    except UncompletedJobError as error:
        level = logging.ERROR
        said = f"Slurm's time limit is near and submitit will not requeue this job ({error})."
    ask_to_stop(level, said)


def report(job: Any, job_dir: Path, fallback: str) -> str:
    """Show a job that did not end ok, with its own sentence; return its status."""
    status = run_status(job_dir) or "failed"
    sentence = error_sentence(job_dir) or fallback
    log.warning(f"Job {job.job_id} ({job_dir.name}) {status}: {sentence}")
    return status


def ddp_shape(params: Any, shapes: set[tuple[Any, int] | None]) -> dict[str, int]:
    """Slurm's nodes and tasks per node (`params`: hydra.launcher's) from the trainer's num_nodes
    and devices of each job (`shapes`; None for a job without DDP): Lightning needs one Slurm task
    per device on each node. Non-DDP jobs: as hydra.launcher says."""
    given = {key: int(params[key]) for key in ("nodes", "tasks_per_node")}
    if shapes == {None}:
        return given
    if len(shapes) > 1:
        raise SystemExit(
            "This sweep mixes DDP jobs of different trainer.devices and trainer.num_nodes "
            f"({sorted(map(str, shapes))}), but a Slurm array gives all its jobs the same "
            "nodes and tasks; sweep each shape (and non-DDP runs) separately."
        )
    ((devices, nodes),) = shapes
    if not isinstance(devices, int):
        raise SystemExit(
            f"trainer.devices={devices} under DDP on Slurm needs a number of devices (one "
            "Slurm task each); give trainer.devices=<n>."
        )
    wanted = {"nodes": nodes, "tasks_per_node": devices}
    for key, trainer_key in (("nodes", "num_nodes"), ("tasks_per_node", "devices")):
        if given[key] not in (1, wanted[key]):
            raise SystemExit(
                f"hydra.launcher.{key}={given[key]} but trainer.{trainer_key}="
                f"{wanted[key]}: Lightning needs one Slurm task per device on each node; "
                f"leave hydra.launcher.{key} out (it follows trainer.{trainer_key}) or make "
                "them equal."
            )
    if wanted != given:
        log.info(
            f"DDP on {nodes} node(s) x {devices} device(s): {nodes} Slurm node(s), "
            f"{devices} task(s) per node"
        )
    return wanted
