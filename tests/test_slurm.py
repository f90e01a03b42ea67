"""hydra/launcher=slurm against a real single-node Slurm (scripts/local-slurm.sh): a sweep, a
cancelled job, Ctrl-C on the submitting command, a job at its time limit (requeued and resumed,
or not), DDP as one job. Marked slurm; skipped where Slurm cannot start (CI requires it)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mnist_mlp.run.record import SCORES
from tests.conftest import ROOT, TINY, write_dataset
from tests.test_launchers import jobs

pytestmark = pytest.mark.slurm
SCRIPT = ROOT / "scripts" / "local-slurm.sh"
SMALL = [o for o in TINY if not o.startswith(("batch_size=", "epochs="))]  # both swept here


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def local_slurm(folder: Path, nodes: int) -> Iterator[dict[str, str]]:
    """A local Slurm of its own (own ports, munged and state) of 1 or 2 nodes, while the
    generator is open: the environment that reaches it."""
    # The second node's slurmd takes the port after SLURMD_PORT.
    ports = {"SLURMCTLD_PORT": str(free_port()), "SLURMD_PORT": str(free_port())}
    started = subprocess.run(
        ["bash", str(SCRIPT), "up", str(folder), str(nodes)],
        env=os.environ | ports,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        reason = (started.stderr.strip().splitlines() or ["no reason given"])[-1]
        if os.environ.get("MNIST_MLP_REQUIRE_SLURM"):
            pytest.fail(f"the local Slurm did not start: {reason}")
        pytest.skip(f"no local Slurm here: {reason}")
    yield os.environ | {"SLURM_CONF": str(folder / "slurm.conf")}
    subprocess.run(["bash", str(SCRIPT), "down", str(folder)], timeout=120)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A single-node local Slurm for this module's tests."""
    yield from local_slurm(tmp_path_factory.mktemp("slurm"), nodes=1)


@pytest.fixture(scope="module")
def long_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten times the tiny training set: epochs long enough to stop a job in the middle."""
    return write_dataset(tmp_path_factory.mktemp("long_data"), train=6000, test=200)


def start(env: dict[str, str], cwd: Path, data: object, *overrides: str) -> subprocess.Popen:
    """`python train.py -m hydra/launcher=slurm` from cwd, the tiny network on `data`, into
    <cwd>/sweep; its output (Hydra's and the launcher's log, errors) on .stdout."""
    settings = [f"data.root={data}", *SMALL, *overrides, f"hydra.sweep.dir={cwd / 'sweep'}"]
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=slurm", *settings],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sweep(env: dict[str, str], cwd: Path, data: object, *overrides: str) -> tuple[int, str]:
    """start(), waited for: (its exit status, its output)."""
    submitting = start(env, cwd, data, *overrides)
    output, _ = submitting.communicate(timeout=600)
    return submitting.returncode, output


def time_limit(requeues: int) -> list[str]:
    """Slurm's shortest limit, a minute. Its signal comes signal_delay_s before the limit, or up
    to 30 s earlier (slurmctld looks every 30 s): here 20-50 s into the job, after its first
    epoch."""
    delay = ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10"]
    return [*delay, f"hydra.launcher.max_num_timeout={requeues}"]


def wait_for(found: Callable[[], object], what: str, seconds: float = 120) -> object:
    """Poll for something a Slurm job does on its own time (no fixed delays)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = found()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds} s for {what}")


def job_dir(sweep_dir: Path, number: int) -> Path:
    (folder,) = sweep_dir.glob(f"{number}_*")
    return folder


def metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def squeue(env: dict[str, str], *options: str) -> dict[str, str]:
    """{job id: state} of the local Slurm's jobs."""
    listing = subprocess.run(
        ["squeue", "--noheader", "--array", "--format=%i %T", *options],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in listing.splitlines())


def test_a_sweep_runs_one_slurm_job_per_run_with_a_share_of_the_cores(
    slurm: dict[str, str], data_root: Path, tmp_path: Path
) -> None:
    (tmp_path / "data").symlink_to(data_root)  # relative to the submitting folder
    sweep_dir = tmp_path / "sweep"
    # The two lr=1e6 jobs diverge.
    status, output = sweep(slurm, tmp_path, "data", "epochs=1", "batch_size=32,64", "lr=0.1,1e6")
    assert status == 0, output[-3000:]  # diverged runs did finish
    runs = {(run["batch_size"], run["lr"]): run for run in jobs(sweep_dir)}
    assert {key: run["status"] for key, run in runs.items()} == {
        (32, 0.1): "ok",
        (32, 1e6): "diverged",
        (64, 0.1): "ok",
        (64, 1e6): "diverged",
    }
    # Each job's torch threads follow the CPUs Slurm gave it (one by default), not the node's.
    assert all(run["torch_threads"] == 1 for run in runs.values())
    array_id = re.search(r"Submitted 4 Slurm jobs as array (\d+)", output).group(1)
    assert f"Slurm array {array_id}: 2 ok, 2 diverged" in output  # the last progress line
    assert f"Job {array_id}_1 " in output and "diverged: The loss became" in output

    # Slurm's own record of each job follows its run, once the job has ended there too (a job's
    # result can be in before its process has exited).
    def ended() -> list[str] | None:
        states = squeue(slurm, "--states=all")
        found = [states.get(f"{array_id}_{n}") for n in range(4)]
        running = {None, "PENDING", "RUNNING", "COMPLETING"}
        return None if running.intersection(found) else found

    assert wait_for(ended, "Slurm to record the jobs' ends") == [
        "COMPLETED",
        "FAILED",
        "COMPLETED",
        "FAILED",
    ]
    overrides = (job_dir(sweep_dir, 0) / ".hydra" / "overrides.yaml").read_text()
    assert f"data.root='{tmp_path / 'data'}'" in overrides  # made absolute before submission
    assert (sweep_dir / "summary.md").read_text().count("| ok |") == 2


def test_a_cancelled_job_is_recorded_and_the_sweep_says_how_to_run_it_on(
    slurm: dict[str, str], long_data: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    submitting = start(slurm, tmp_path, long_data, "epochs=1,40")
    wait_for(lambda: list(sweep_dir.glob("1_*/checkpoints/last.ckpt")), "job 1's first epoch")
    (job_id,) = [job for job in squeue(slurm) if job.endswith("_1")]
    subprocess.run(["scancel", job_id], env=slurm, check=True)
    output, _ = submitting.communicate(timeout=300)

    assert submitting.returncode == 1, output[-3000:]
    assert metrics(job_dir(sweep_dir, 0))["status"] == "ok"  # the other job's result is kept
    cancelled = metrics(job_dir(sweep_dir, 1))
    assert cancelled["status"] == "cancelled" and cancelled["slurm_state"] == "CANCELLED"
    assert 1 <= cancelled["epochs_run"] < 40
    assert f"Job {job_id} " in output and " cancelled: Training stopped in epoch" in output
    assert "| cancelled |" in (sweep_dir / "summary.md").read_text()
    assert "1 of 2 jobs did not finish" in output
    # The command it gives resumes the job in its own folder; the summary then counts it ok.
    (given,) = re.findall(r"job 1 \(cancelled\): python train.py (.*)", output)
    assert f"ckpt_path='{job_dir(sweep_dir, 1)}/checkpoints/last.ckpt'" in given
    resumed = subprocess.run(
        f"{sys.executable} {ROOT / 'train.py'} {given}", shell=True, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics(job_dir(sweep_dir, 1))["epochs_run"] == 40
    subprocess.run([sys.executable, "-m", "mnist_mlp.sweeps.summary", str(sweep_dir)], check=True)
    assert (sweep_dir / "summary.md").read_text().count("| ok |") == 2


def test_ctrl_c_leaves_the_jobs_running_and_says_how_to_summarise_them(
    slurm: dict[str, str], long_data: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    submitting = start(slurm, tmp_path, long_data, "epochs=300", "lr=0.1,0.2")
    assert submitting.stdout is not None
    seen = ""
    while "Submitted" not in seen:
        seen += submitting.stdout.readline()
    submitting.send_signal(signal.SIGINT)
    rest, _ = submitting.communicate(timeout=60)

    assert submitting.returncode == 130
    array_id = re.search(r"as array (\d+)", seen).group(1)
    assert f"the Slurm jobs of array {array_id} keep running" in rest
    assert f"python -m mnist_mlp.sweeps.summary {sweep_dir}" in rest and "Traceback" not in rest
    assert {f"{array_id}_0", f"{array_id}_1"} <= set(squeue(slurm))  # not cancelled
    subprocess.run(["scancel", array_id], env=slurm, check=True)


def test_a_job_at_its_time_limit_is_requeued_and_ends_as_an_unbroken_run(
    slurm: dict[str, str], long_data: Path, tmp_path: Path
) -> None:
    # The signal (time_limit) comes before 1000 epochs have trained on one core, even on a fast
    # processor (its latest arrival is 50 s in; 700 epochs once took only 41 s). A requeued job
    # may be signalled again before it finishes (then requeued again: up to 8 times).
    settings = [
        f"data.root={long_data}", *SMALL, "epochs=1000", f"hydra.run.dir={tmp_path / 'run'}"
    ]  # fmt: skip
    unbroken = subprocess.Popen(  # beside it, on the other core, as a straight local run
        [sys.executable, str(ROOT / "train.py"), *settings],
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    sweep_dir = tmp_path / "sweep"
    status, output = sweep(slurm, tmp_path, long_data, "epochs=1000", *time_limit(requeues=8))
    assert unbroken.wait(timeout=600) == 0, unbroken.communicate()[1][-3000:]

    assert status == 0, output[-3000:]
    assert "was requeued; it resumes from its last.ckpt" in output
    assert "Resuming" in (job_dir(sweep_dir, 0) / "train.log").read_text()
    (log_file,) = sweep_dir.glob(".submitit/*/*_0_log.err")
    assert "Requeued job" in log_file.read_text()
    requeued = metrics(job_dir(sweep_dir, 0))
    straight = metrics(tmp_path / "run")
    assert requeued["status"] == "ok" and requeued["epochs_run"] == 1000
    assert requeued["torch_threads"] == straight["torch_threads"] == 1
    assert {name: requeued[name] for name in SCORES} == {name: straight[name] for name in SCORES}


def test_a_job_that_may_not_be_requeued_ends_interrupted_with_its_resume_command(
    slurm: dict[str, str], long_data: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    # More epochs than any machine trains in the minute: the signal always comes first.
    status, output = sweep(slurm, tmp_path, long_data, "epochs=100000", *time_limit(requeues=0))
    assert status == 1
    stopped = metrics(job_dir(sweep_dir, 0))
    assert stopped["status"] == "interrupted" and 1 <= stopped["epochs_run"] < 100000
    assert stopped["slurm_state"] == "FAILED"  # Slurm's own record says it did not finish
    assert "submitit will not requeue this job" in (job_dir(sweep_dir, 0) / "train.log").read_text()
    assert f"ckpt_path='{job_dir(sweep_dir, 0)}/checkpoints/last.ckpt'" in output


def test_ddp_runs_as_one_job_of_one_task_per_device(
    slurm: dict[str, str], data_root: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    status, output = sweep(slurm, tmp_path, data_root, "trainer=ddp_cpu", "epochs=2")
    assert status == 0, output[-3000:]
    assert "DDP on 1 node(s) x 2 device(s): 1 Slurm node(s), 2 task(s) per node" in output
    (folder,) = sweep_dir.glob(".submitit/*/")
    logs = sorted(path.name.split("_")[-2] for path in folder.glob("*_log.err"))
    assert logs == ["0", "1"]  # one Slurm job, two tasks
    assert "MEMBER: 2/2" in "".join(path.read_text() for path in folder.glob("*_log.err"))
    run = metrics(job_dir(sweep_dir, 0))
    assert run["status"] == "ok" and run["test/acc"] > 0.5


def test_a_submission_slurm_refuses_is_one_sentence(
    slurm: dict[str, str], data_root: Path, tmp_path: Path
) -> None:
    status, output = sweep(slurm, tmp_path, data_root, "hydra.launcher.partition=no_such_partition")
    assert status == 1
    assert "Slurm refused the sweep's jobs (sbatch: error: Batch job submission failed" in output
    assert "Invalid partition" in output
    assert "Traceback" not in output
