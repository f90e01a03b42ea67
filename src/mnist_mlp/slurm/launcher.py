"""hydra/launcher=slurm: Hydra's submitit launcher for Slurm, plus what a cluster user needs.

In the submitting command: paths made absolute, DDP jobs given one task per device, the job ids
and a progress line while it waits, each failed job's sentence as it ends, cancelled jobs recorded
in their metrics.json, and Ctrl-C that leaves the jobs running and says how to summarise them.
In each job: torch threads = the CPUs Slurm gave the task; a job signalled before its time limit
(or preempted) is requeued by submitit and resumes from its last.ckpt; a run that is not ok ends
the job with an error, so Slurm's job state says FAILED (the sweep goes on).

Slurm's accounting (sacct) is not needed: job states come from squeue.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
    SlurmLauncher as SubmititSlurmLauncher,
)
from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_mlp.run.folder_lock import first_process
from mnist_mlp.slurm.jobs import (
    ENDED,
    POLL_SECONDS,
    RUNNING,
    WAITING,
    RunNotOk,
    cpus_per_task,
    ddp_shape,
    folder,
    quoted,
    record_unfinished,
    report,
    run_status,
    slurm_states,
    stop,
)

log = logging.getLogger(__name__)


class SlurmLauncher(SubmititSlurmLauncher):
    # --- in each job ---

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> JobReturn:
        import torch

        # Not every core of the node: the task's share (OMP_NUM_THREADS too, or Lightning's DDP
        # gives each process the node's cores / its processes on that node).
        threads = cpus_per_task()
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
        submitit_handler = signal.getsignal(signal.SIGUSR2)
        if callable(submitit_handler):
            signal.signal(signal.SIGUSR2, lambda *received: stop(submitit_handler, *received))
        result = super().__call__(sweep_overrides, job_dir_key, job_num, job_id, singleton_state)
        job_dir = Path(result.hydra_cfg.hydra.runtime.output_dir)
        status = run_status(job_dir)
        if status != "ok" and first_process():  # the first of a DDP job's tasks writes it
            raise RunNotOk(f"the run ended {status or 'without metrics.json'}: {job_dir}")
        return result

    def checkpoint(
        self, sweep_overrides: list[str], job_dir_key: str, job_num: int, *rest: Any
    ) -> Any:
        """What submitit requeues when Slurm signals the job before its time limit or preempts
        it: the same job, resuming in its own folder from last.ckpt when an epoch has finished."""
        from mnist_mlp.config.command_line import last_checkpoint

        last = last_checkpoint(self.job_dir(sweep_overrides, job_num))  # the signal may come early
        overrides = [o for o in sweep_overrides if not o.startswith(("ckpt_path=", "hydra.output"))]
        if last.is_file():  # the job's own .hydra/ stays, for the resume's comparison
            overrides += [f"ckpt_path={quoted(last)}", "hydra.output_subdir=null"]
        return super().checkpoint(overrides, job_dir_key, job_num, *rest)

    # --- in the submitting command ---

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit
        from submitit.core.utils import FailedJobError

        assert self.config is not None and self.hydra_context is not None
        if shutil.which("sbatch") is None:
            raise SystemExit(
                "hydra/launcher=slurm submits with sbatch, which is not on this machine's PATH: "
                "run the sweep on a Slurm login node, or choose another launcher (e.g. "
                "hydra/launcher=joblib)."
            )
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        overrides, job_dirs, shapes = [], [], set()
        for number, given in enumerate(job_overrides, start=initial_job_idx):
            config = self.job_config([*given, f"hydra.sweep.dir={quoted(sweep_dir)}"], number)
            # Compute nodes may start the jobs in another folder.
            absolute = [f"hydra.sweep.dir={quoted(sweep_dir)}"]
            absolute.append(f"data.root={quoted(Path(config.data.root).absolute())}")
            overrides.append([o for o in given if not o.startswith("data.root=")] + absolute)
            job_dirs.append(folder(config))  # data.root is not part of its name
            is_ddp = "ddp" in str(config.trainer.get("strategy", ""))
            trainer = config.trainer
            shapes.add((trainer.devices, trainer.get("num_nodes", 1)) if is_ddp else None)
        params = dict(self.params) | ddp_shape(self.params, shapes)
        executor = submitit.AutoExecutor(
            folder=Path(params.pop("submitit_folder")).absolute(),
            cluster="slurm",
            slurm_max_num_timeout=params.pop("max_num_timeout"),
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{key if key in shared else f"slurm_{key}": value for key, value in params.items()}
        )
        numbers = range(initial_job_idx, initial_job_idx + len(overrides))
        for number, job in zip(numbers, overrides, strict=True):
            log.info(f"\t#{number} : {' '.join(filter_overrides(job))}")
        try:
            jobs = executor.map_array(
                self,
                overrides,
                ["hydra.sweep.dir"] * len(overrides),
                list(numbers),
                [f"job_id_for_{number}" for number in numbers],
                [Singleton.get_state()] * len(overrides),
            )
        except FailedJobError as error:  # sbatch refused: its own words, last line first
            said = str(error).strip().splitlines()[-1]
            raise SystemExit(
                f"Slurm refused the sweep's jobs ({said}); check the hydra.launcher.* "
                "settings (partition, account, qos, timeout_min, ...) and that this machine "
                "can submit (sinfo)."
            ) from None
        array_id = jobs[0].job_id.split("_")[0]
        if len(jobs) == 1:
            log.info(f"Submitted 1 Slurm job, {array_id}; its logs: {jobs[0].paths.folder}/")
        else:
            log.info(
                f"Submitted {len(jobs)} Slurm jobs as array {array_id} (job n is {array_id}_n); "
                f"Slurm's output of job n: {jobs[0].paths.folder.parent}/{array_id}_<n>/"
            )
        try:
            return self.wait(jobs, overrides, job_dirs, array_id)
        except KeyboardInterrupt:
            log.error(
                f"Stopped waiting; the Slurm jobs of array {array_id} keep running (squeue "
                f"--jobs={array_id}; scancel {array_id} cancels them). When they end, "
                f"python -m mnist_mlp.sweeps.summary {sweep_dir} writes the sweep's summary."
            )
            raise SystemExit(130) from None

    def job_config(self, overrides: list[str], number: int) -> DictConfig:
        """A job's composed config, as the job will see it (its folder resolvable)."""
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config):
            config.hydra.job.num = number
        return config

    def job_dir(self, overrides: list[str], number: int) -> Path:
        """The folder Hydra gives the job: <sweep dir>/<number>_<overrides>."""
        return folder(self.job_config(overrides, number))

    def wait(
        self, jobs: list, overrides: list[list[str]], job_dirs: list[Path], array_id: str
    ) -> list[JobReturn]:
        """Poll squeue until every job has ended; a progress line when the counts change."""
        from submitit.core.utils import pickle_load

        results: dict[int, JobReturn] = {}
        outcomes: dict[int, str] = {}
        last_line, last_states = "", {}
        started: set[str] = set()
        while len(results) < len(jobs):
            states = slurm_states(array_id)
            for index, job in enumerate(jobs):
                if index in results:
                    continue
                state = (states or {}).get(job.job_id, "UNKNOWN")
                if state in WAITING and job.job_id in started:  # it ran, and waits again
                    log.info(f"Job {job.job_id} was requeued; it resumes from its last.ckpt.")
                    started.discard(job.job_id)
                elif state in RUNNING:
                    started.add(job.job_id)
                ended = state in ENDED or (states is not None and job.job_id not in states)
                if job.paths.result_pickle.exists():
                    outcome, value = pickle_load(job.paths.result_pickle)
                    if outcome == "success":
                        results[index], outcomes[index] = value, "ok"
                        continue
                    status = report(job, job_dirs[index], value.strip().splitlines()[-1])
                elif ended:
                    status = record_unfinished(job_dirs[index], overrides[index], state, job.job_id)
                    report(job, job_dirs[index], f"Slurm ended it as {state}")
                else:
                    continue
                # Not ok, but the sweep goes on (nan, as run.py returns for a failed run).
                results[index] = JobReturn(
                    overrides=overrides[index], status=JobStatus.COMPLETED, _return_value=math.nan
                )
                outcomes[index] = status
            last_states = states or last_states
            counts = Counter(
                outcomes.get(index)
                or ("running" if last_states.get(job.job_id) in RUNNING else "pending")
                for index, job in enumerate(jobs)
            )
            order = ["pending", "running", "ok"]
            names = sorted(counts, key=lambda name: (order + [name]).index(name))
            line = ", ".join(f"{counts[name]} {name}" for name in names)
            if line != last_line:
                log.info(f"Slurm {'array' if len(jobs) > 1 else 'job'} {array_id}: {line}")
                last_line = line
            if len(results) < len(jobs):
                time.sleep(POLL_SECONDS)
        return [results[index] for index in range(len(jobs))]
