"""The batch-size study: steps to a target in each job, and the sweep's answer."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from mnist_mlp.config.schema import linear_scaling_lr
from mnist_mlp.run.fit import fit_and_test
from mnist_mlp.sweeps.batch_size_fit import fit_steps
from mnist_mlp.sweeps.batch_size_report import write_report
from tests.conftest import ROOT, compose_train, run_main


def test_a_run_records_the_first_step_that_reaches_the_target_and_stops(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    # 500 training images in batches of 20: checks every 3 steps (60 examples), 25 steps an epoch
    cfg = make_cfg(
        "study.target=0.5", "study.every_examples=60", "log_every=3", "batch_size=20", "epochs=5",
        "lr=0.05",
    )  # fmt: skip
    metrics = fit_and_test(cfg, tmp_path)
    assert metrics["status"] == "ok" and metrics["target_reached"]
    steps, examples = metrics["target_steps"], metrics["target_examples"]
    assert steps % 3 == 0 and examples == steps * 20  # within the first epoch: every step full
    assert metrics["epochs_run"] < 5  # stopped at the target
    assert metrics["target_seconds"] > 0 and metrics["train_examples"] == 500
    assert metrics["study.target"] == 0.5


def test_a_job_that_cannot_reach_the_target_says_so_without_failing(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    metrics = fit_and_test(make_cfg("study.target=1.0", "epochs=1", "lr=1e-5"), tmp_path)
    assert metrics["status"] == "ok" and metrics["target_reached"] is False
    assert metrics["target_steps"] is None and metrics["epochs_run"] == 1


def test_without_a_target_nothing_is_recorded(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    metrics = fit_and_test(make_cfg("epochs=1"), tmp_path)
    assert "target_reached" not in metrics and "study.target" not in metrics


def test_the_experiment_sweeps_batch_sizes_with_lrs_around_the_linear_scaling_diagonal() -> None:
    cfg = compose_train("experiment=batch_size", "batch_size=256", "study.lr_factor=2")
    assert cfg.lr == 2 * linear_scaling_lr(256, 1) == 2 * 0.4
    assert linear_scaling_lr(8, 1) == 0.025 and linear_scaling_lr(4096, 1) == 0.4  # capped
    assert cfg.model.lr_schedule == "constant" and cfg.model.momentum == 0
    assert cfg.study.target is not None
    # The target is checked every study.every_examples examples, whatever the batch size.
    assert cfg.log_every == cfg.study.every_examples // 256
    assert compose_train("experiment=batch_size", "batch_size=4096").log_every == 1


def fake_job(sweep: Path, number: int, **metrics: object) -> None:
    defaults = {
        "status": "ok",
        "target_reached": True,
        "study.target": 0.85,
        "study.every_examples": 2048,
        "model.hidden_sizes": "[512, 256]",
        "model.activation": "relu",
        "loss": "cross_entropy",
        "data.dataset": "FashionMNIST",
        "epochs": 30,
        "torch_threads": 1,
        "train_examples": 55000,
        "noise_b_simple": 200.0,
        "noise_trace": [[10, 150.0], [20, 250.0]],
        "target_checks": 5,
    }
    (sweep / str(number)).mkdir(parents=True)
    (sweep / str(number) / "metrics.json").write_text(json.dumps(defaults | metrics))


def test_the_report_fits_the_steps_model_and_gives_the_answer(tmp_path: Path) -> None:
    """Jobs whose steps follow S = 300 (1 + 200 / B) exactly, other lrs slower or diverged."""
    sizes = [8, 32, 128, 512, 2048, 65536]
    for number, size in enumerate(sizes):
        steps = round(300 * (1 + 200 / size))
        fake_job(
            tmp_path,
            number,
            batch_size=size,
            lr=0.1,
            target_steps=steps,
            target_examples=steps * size,
            target_seconds=steps * (0.001 + size * 1e-5),
        )
    fake_job(
        tmp_path,
        10,
        batch_size=32,
        lr=0.2,
        target_reached=False,
        target_steps=None,
        target_examples=None,
        target_seconds=None,
    )
    fake_job(tmp_path, 11, batch_size=32, lr=0.4, status="diverged", target_reached=False)
    answer = write_report(tmp_path)
    assert "B_crit = 200" in answer and "B_simple = 200" in answer
    assert "(B_crit / B_simple = 1.00)" in answer
    assert "batch_size=128 lr=0.1" in answer  # the fewest training seconds
    page = (tmp_path / "batch_size.md").read_text()
    assert "| 65536 (full batch) |" in page
    assert "0.2: not reached" in page and "0.4: diverged" in page
    assert (tmp_path / "batch_size.png").stat().st_size > 10_000


def test_a_target_reached_at_the_first_check_is_too_easy_and_nothing_is_fitted(
    tmp_path: Path,
) -> None:
    """At batch 8 the first check comes after 2048 / 8 = 256 steps: reaching it there measures
    the check interval, not what the batch size needs."""
    for number, (size, steps, checks) in enumerate([(8, 256, 1), (64, 32, 1), (512, 40, 10)]):
        fake_job(
            tmp_path, number, batch_size=size, lr=0.1, target_steps=steps,
            target_examples=steps * size, target_seconds=1.0, target_checks=checks,
        )  # fmt: skip
    answer = write_report(tmp_path)
    assert "too easy for these data: batch sizes 8, 64 reached it at their first check" in answer
    assert "study.target=0.925" in answer and "B_crit" not in answer


def test_each_data_set_brings_its_own_study_target() -> None:
    assert compose_train("experiment=batch_size").study.target == 0.97
    assert compose_train("experiment=batch_size", "data=fashion_mnist").study.target == 0.85
    assert compose_train().study.target is None  # outside the study: no target


def test_the_fit_is_refused_with_too_few_points() -> None:
    assert fit_steps({64: {"target_steps": 100}}) is None


def test_another_sweep_gets_no_batch_size_page(tmp_path: Path) -> None:
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text(json.dumps({"status": "ok"}))
    assert write_report(tmp_path) is None
    assert not (tmp_path / "batch_size.md").exists()


def test_the_study_runs_from_one_command_and_its_page_can_be_rebuilt(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = tmp_path / "sweep"
    run_main(
        "-m",
        "experiment=batch_size",
        "hydra/launcher=basic",  # in this process: quick on tiny data
        f"data.root={data_root}",
        "data.val_size=100",
        "model.hidden_sizes=[32]",
        "batch_size=16,64,auto",  # auto: one more contestant
        "study.lr_factor=1,4",
        "study.target=0.6",
        "study.every_examples=64",
        "epochs=4",
        f"hydra.sweep.dir={sweep}",
        monkeypatch=monkeypatch,
    )
    page = (sweep / "batch_size.md").read_text()
    assert "| 16 |" in page and "| 64 |" in page and "## The answer" in page
    assert "| auto (chosen each interval) |" in page
    assert "batch sizes" in (sweep / "summary.md").read_text()  # auto's, first to last
    (sweep / "batch_size.md").unlink()
    rebuilt = subprocess.run(
        [sys.executable, "-m", "mnist_mlp.sweeps.summary", str(sweep)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert rebuilt.returncode == 0 and "batch_size.md" in rebuilt.stdout
    assert (sweep / "batch_size.md").read_text() == page


def test_the_report_sets_auto_beside_the_fixed_batch_sizes(tmp_path: Path) -> None:
    for number, (size, steps, seconds) in enumerate(
        [(16, 3000, 9.0), (64, 900, 4.0), (256, 500, 6.0)]
    ):
        fake_job(
            tmp_path, number, batch_size=size, lr=0.1, target_steps=steps,
            target_examples=steps * size, target_seconds=seconds,
        )  # fmt: skip
    trace = [[64, 1024, None, 16, 0.05], [80, 2048, 40.0, 32, 0.1], [96, 3072, 70.0, 64, 0.2]]
    fake_job(
        tmp_path, 9, batch_size="auto", lr=0.2, target_steps=600, target_examples=40000,
        target_seconds=3.0, batch_size_first=16, batch_size_trace=trace,
    )  # fmt: skip
    answer = write_report(tmp_path)
    page = (tmp_path / "batch_size.md").read_text()
    assert "| auto (chosen each interval) | 0.2 | 600 | 40000 | 3 |" in page
    assert "With batch_size=auto (lr 0.2 at batch 64) the target was reached in 600 SGD" in answer
    assert "choosing batches from 16 to 64: 0.75x the seconds of the fastest fixed pair" in answer
    # Batch 16 took 48000 examples: more than auto's; 64 took 57600. None took fewer.
    assert "no fixed batch size reached it with as few examples" in answer
    assert "B_crit" in answer  # the fit is over the fixed batch sizes only
