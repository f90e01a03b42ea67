"""Hydra's launcher and sweeper plugins run the same jobs, and the sweep summary covers them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_mlp.config.checks import check_config
from mnist_mlp.errors import UsageError
from tests.conftest import ROOT, TINY, run_main


def jobs(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]


@pytest.mark.slow
def test_joblib_runs_jobs_in_parallel_without_oversubscribing(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_main(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"data.root={data_root}",
        *TINY,
        "epochs=1",
        "lr=0.1,0.2",
        f"hydra.sweep.dir={tmp_path}",
        monkeypatch=monkeypatch,
    )
    runs = jobs(tmp_path)
    assert sorted(run["lr"] for run in runs) == [0.1, 0.2]
    assert all(run["status"] == "ok" for run in runs)
    # joblib's worker processes share the cores: threads per job = cores // jobs
    assert all(run["torch_threads"] == max(1, os.cpu_count() // 2) for run in runs)
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "heatmap.png").is_file()


@pytest.mark.slow
def test_submitit_local_runs_the_cluster_path_on_this_machine(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_main(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=20",
        f"data.root={data_root}",
        *TINY,
        "epochs=1",
        "lr=0.1,0.2",
        f"hydra.sweep.dir={tmp_path}",
        monkeypatch=monkeypatch,
    )
    assert sorted(run["lr"] for run in jobs(tmp_path)) == [0.1, 0.2]
    assert (tmp_path / "summary.csv").is_file()


def test_optuna_searches_and_the_summary_covers_its_trials(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_main(
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        f"data.root={data_root}",
        "data.val_size=100",  # the searched keys are left to Optuna
        "epochs=1",
        f"hydra.sweep.dir={tmp_path}",
        monkeypatch=monkeypatch,
    )
    runs = jobs(tmp_path)
    assert len(runs) == 3
    assert all(0.01 <= run["lr"] <= 0.5 and run["batch_size"] in (16, 32, 64, 128) for run in runs)
    assert {run["model.hidden_sizes"] for run in runs} <= {"[128]", "[256]", "[512]", "[512, 256]"}
    assert (tmp_path / "optimization_results.yaml").is_file()  # Optuna's best trial
    rows = (tmp_path / "summary.md").read_text()
    assert rows.count("| ok |") == 3


@pytest.mark.slow
def test_ddp_cpu_trains_one_run_in_two_processes(data_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "trainer=ddp_cpu",
            f"data.root={data_root}",
            *TINY,
            f"hydra.run.dir={run_dir}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr + result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["test/acc"] > 0.5
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_a_sweep_of_ddp_runs_on_this_machine_is_refused_in_one_sentence(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit, match="trainer.strategy=ddp cannot run in a sweep") as refused:
        run_main(
            "-m",
            "trainer=ddp_cpu",
            f"data.root={data_root}",
            *TINY,
            "lr=0.1,0.2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            monkeypatch=monkeypatch,
        )
    assert "hydra/launcher=slurm" in str(refused.value.code)
    assert not (tmp_path / "sweep").exists()  # refused before anything was written


def test_manual_backprop_is_refused_under_ddp(make_cfg) -> None:
    with pytest.raises(UsageError, match="must come from autograd"):
        check_config(make_cfg("trainer=ddp_cpu", "model.backprop=manual"))


def test_slurm_ddp_jobs_get_the_trainers_nodes_and_one_task_per_device_or_one_sentence() -> None:
    from mnist_mlp.slurm.jobs import ddp_shape

    def shape(shapes: set, nodes: int = 1, tasks_per_node: int = 1) -> dict[str, int]:
        return ddp_shape({"nodes": nodes, "tasks_per_node": tasks_per_node}, shapes)

    assert shape({None}, tasks_per_node=3) == {"nodes": 1, "tasks_per_node": 3}  # not DDP
    assert shape({(4, 1)}) == {"nodes": 1, "tasks_per_node": 4}  # follows trainer.devices
    assert shape({(1, 2)}) == {"nodes": 2, "tasks_per_node": 1}  # and trainer.num_nodes
    with pytest.raises(SystemExit, match="tasks_per_node=2 but trainer.devices=4"):
        shape({(4, 1)}, tasks_per_node=2)
    with pytest.raises(SystemExit, match="nodes=3 but trainer.num_nodes=2"):
        shape({(1, 2)}, nodes=3)
    with pytest.raises(SystemExit, match="sweep each shape"):
        shape({(2, 1), None})


def test_the_slurm_launcher_without_sbatch_says_so_in_one_sentence(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    with pytest.raises(SystemExit, match="submits with sbatch, which is not on") as refused:
        run_main(
            "-m",
            "hydra/launcher=slurm",
            f"data.root={data_root}",
            *TINY,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            monkeypatch=monkeypatch,
        )
    assert "hydra/launcher=joblib" in str(refused.value.code)


def test_what_the_slurm_signal_handler_says_is_logged_where_training_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A log call inside a signal handler can be lost (a "reentrant call" into the file the
    # interrupted code was writing): the handler only asks, the interval's end says it.
    from types import SimpleNamespace

    from lightning.pytorch.utilities.exceptions import SIGTERMException
    from submitit.core.utils import UncompletedJobError

    from mnist_mlp.run import stop_together
    from mnist_mlp.slurm.jobs import stop

    def refuses(*_) -> None:
        raise UncompletedJobError("timed-out too many times.")

    strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all: decision)
    trainer = SimpleNamespace(strategy=strategy)
    try:
        stop(refuses, 12, None)
        assert "submitit will not requeue" not in caplog.text  # not from inside the handler
        with pytest.raises(SIGTERMException):
            stop_together.StopTogether().on_train_batch_end(trainer, None, None, None, 0)
        assert "submitit will not requeue this job (timed-out too many times.)" in caplog.text
    finally:
        stop_together.STOP.clear()
