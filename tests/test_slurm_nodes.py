"""DDP across two Slurm nodes: a real two-node local cluster (scripts/local-slurm.sh up <dir> 2,
two slurmd daemons on this host), one training over both nodes, a node's task killed, a job at
its time limit requeued and resumed. Marked slurm; skipped where Slurm cannot start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mnist_mlp.run.record import SCORES
from tests.conftest import write_dataset
from tests.test_slurm import job_dir, local_slurm, metrics, start, sweep, time_limit, wait_for

pytestmark = pytest.mark.slurm
TWO_NODES = ["trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2"]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    yield from local_slurm(tmp_path_factory.mktemp("slurm2"), nodes=2)


@pytest.fixture(scope="module")
def long_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four times the tiny training set: epochs long enough to stop a job in the middle."""
    return write_dataset(tmp_path_factory.mktemp("long_data"), train=2400, test=200)


def node_list(env: dict[str, str], job_id: str) -> str:
    """The nodes Slurm gave a job (squeue keeps ended jobs for a few minutes)."""
    return subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%N"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_ddp_trains_one_run_over_two_nodes_with_one_task_each(
    two_nodes: dict[str, str], data_root: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    status, output = sweep(two_nodes, tmp_path, data_root, *TWO_NODES, "epochs=2")
    assert status == 0, output[-3000:]
    assert "DDP on 2 node(s) x 1 device(s): 2 Slurm node(s), 1 task(s) per node" in output
    (folder,) = sweep_dir.glob(".submitit/*/")
    script = (folder / f"{folder.name}_submission.sh").read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    assert len(node_list(two_nodes, folder.name).split(",")) == 2  # both nodes, one task each
    errors = "".join(path.read_text() for path in folder.glob("*_log.err"))
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in errors and "GLOBAL_RANK: 1, MEMBER: 2/2" in errors
    run = job_dir(sweep_dir, 0)
    assert [p.name for p in sweep_dir.glob("*/metrics.json")] == ["metrics.json"]  # one run
    assert metrics(run)["status"] == "ok" and metrics(run)["test/acc"] > 0.5
    assert metrics(run)["torch_threads"] == 1  # the task's one CPU, not the host's cores
    # One TensorBoard run, written by the first process only: every event file from one pid.
    # (events.out.tfevents.<time>.<host>.<pid>.<n>[.hparams...])
    pids = {re.search(r"\.(\d+)\.\d+(\.\w+)?$", p.name).group(1) for p in run.glob("events.*")}
    assert len(pids) == 1
    assert "The gradient noise scale is not measured under DDP" in (run / "train.log").read_text()


def ranks(job_id: str, rank: int) -> list[int]:
    """The pids of a Slurm job's task of this global rank (its Python process)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        variables = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        if (
            variables.get(b"SLURM_JOB_ID") == job_id.encode()
            and variables.get(b"SLURM_PROCID") == str(rank).encode()
            and b"submitit.core._submit" in command
        ):
            found.append(int(pid))
    return found


def test_a_task_killed_on_one_node_fails_the_run_and_keeps_its_last_checkpoint(
    two_nodes: dict[str, str], long_data: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    submitting = start(two_nodes, tmp_path, long_data, *TWO_NODES, "epochs=1000")
    last = wait_for(lambda: list(sweep_dir.glob("0_*/checkpoints/last.ckpt")), "a first epoch")[0]
    (folder,) = sweep_dir.glob(".submitit/*/")
    for pid in wait_for(lambda: ranks(folder.name, 1), "the second node's task"):
        os.kill(pid, signal.SIGKILL)
    output, _ = submitting.communicate(timeout=300)

    assert submitting.returncode == 1, output[-3000:]
    run = metrics(job_dir(sweep_dir, 0))
    assert run["status"] == "failed"
    assert "failed: This job failed (RuntimeError: " in output and "last.ckpt is kept" in output
    assert "| failed |" in (sweep_dir / "summary.md").read_text()
    saved = torch.load(last, weights_only=True)  # the last checkpoint is whole
    assert saved["epoch"] >= 0 and "state_dict" in saved


def test_a_two_node_job_at_its_time_limit_is_requeued_and_ends_as_an_unbroken_run(
    two_nodes: dict[str, str], long_data: Path, tmp_path: Path
) -> None:
    # About 100 s of training: Slurm's signal comes 20-50 s in (see time_limit), mid-run.
    settings = [*TWO_NODES, "epochs=1500"]
    status, output = sweep(two_nodes, tmp_path, long_data, *settings, *time_limit(requeues=8))
    assert status == 0, output[-3000:]
    assert "was requeued; it resumes from its last.ckpt" in output
    requeued = metrics(job_dir(tmp_path / "sweep", 0))
    assert "Resuming" in (job_dir(tmp_path / "sweep", 0) / "train.log").read_text()
    (tmp_path / "unbroken").mkdir()
    status, output = sweep(two_nodes, tmp_path / "unbroken", long_data, *settings)
    assert status == 0, output[-3000:]
    unbroken = metrics(job_dir(tmp_path / "unbroken" / "sweep", 0))
    assert requeued["status"] == "ok" and requeued["epochs_run"] == 1500
    assert {name: requeued[name] for name in SCORES} == {name: unbroken[name] for name in SCORES}
