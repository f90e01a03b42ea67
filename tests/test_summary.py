"""A multirun ends with summary.csv, summary.md and heatmap.png; the command rebuilds them."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from mnist_mlp.sweeps import summary
from tests.conftest import TINY, run_main


def read_rows(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def sweep(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2x2 sweep in which the two lr=1e6 jobs diverge."""
    sweep = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_main(
            "-m",
            *TINY,
            "epochs=1",
            f"data.root={data_root}",
            "batch_size=16,32",
            "lr=0.1,1e6",
            f"hydra.sweep.dir={sweep}",
            monkeypatch=monkeypatch,
        )
    return sweep


def test_every_job_gets_a_run_dir_with_its_settings(sweep: Path) -> None:
    # Named by number and overrides (TensorBoard shows the folder names), the swept keys first
    # (TensorBoard cuts long names), paths left out.
    names = sorted(path.parent.name for path in sweep.glob("*/metrics.json"))
    assert names[0].startswith("0_batch_size=16,lr=0.1,data.val_size=100,")
    assert not any("data.root" in name for name in names)
    runs = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert {(m["batch_size"], m["lr"]) for m in runs} == {
        (16, 0.1),
        (16, 1e6),
        (32, 0.1),
        (32, 1e6),
    }


def test_the_sweep_ends_with_a_summary_best_first(sweep: Path) -> None:
    rows = read_rows(sweep)
    assert {(r["batch_size"], r["lr"], r["status"]) for r in rows} == {
        ("16", "0.1", "ok"),
        ("32", "0.1", "ok"),
        ("16", "1000000.0", "diverged"),
        ("32", "1000000.0", "diverged"),
    }
    assert all(float(r["val/acc"]) > 0.5 for r in rows if r["status"] == "ok")
    table = (sweep / "summary.md").read_text().splitlines()
    body = [line for line in table if line.startswith("| ") and "---" not in line][1:]
    assert [line.split(" | ")[-1] for line in body] == ["ok |", "ok |", "diverged |", "diverged |"]
    with Image.open(sweep / "heatmap.png") as picture:
        assert picture.size[0] > 300 and picture.size[1] > 200


def test_the_command_rebuilds_the_summary_and_marks_a_lost_job_failed(
    sweep: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name in ("summary.csv", "summary.md", "heatmap.png"):
        (sweep / name).unlink()
    (first,) = sweep.glob("0_*")
    (first / "metrics.json").rename(first / "metrics.json.moved")
    try:
        monkeypatch.setattr(sys, "argv", ["summary", str(sweep)])
        summary.main()
    finally:
        (first / "metrics.json.moved").rename(first / "metrics.json")
    rows = read_rows(sweep)
    assert len(rows) == 4 and (sweep / "heatmap.png").is_file() and (sweep / "summary.md").is_file()
    assert {r["job"]: r["status"] for r in rows}["0"] == "failed"
    assert sum(r["status"] == "ok" for r in rows) == 1
    assert "4 jobs (3 not ok)" in capsys.readouterr().out


def test_one_swept_key_gives_bars(tmp_path: Path) -> None:
    for job, (lr, status) in enumerate([("0.1", "ok"), ("0.5", "diverged")]):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(f"- lr={lr}\n- epochs=1\n")
        metrics = {"status": status, "val/acc": 0.9 if status == "ok" else None}
        (tmp_path / str(job) / "metrics.json").write_text(json.dumps(metrics))
    keys, rows = summary.job_rows(tmp_path)
    assert summary.swept_keys(keys, rows) == ["lr"]
    summary.summarise(tmp_path)
    with Image.open(tmp_path / "heatmap.png") as picture:
        picture.verify()


def test_a_sweep_over_seeds_shows_mean_and_spread_not_the_luckiest_seed(tmp_path: Path) -> None:
    scores = {("0.1", "1"): 0.80, ("0.1", "2"): 0.90, ("0.2", "1"): 0.86, ("0.2", "2"): None}
    for job, ((lr, seed), score) in enumerate(scores.items()):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        overrides = f"- lr={lr}\n- seed={seed}\n"
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(overrides)
        metrics = {"status": "ok" if score else "diverged", "val/acc": score}
        (tmp_path / str(job) / "metrics.json").write_text(json.dumps(metrics))
    summary.summarise(tmp_path)
    page = (tmp_path / "summary.md").read_text()
    over_seeds = page.split("## Over the seeds, best mean first")[1]
    # lr=0.2's one good seed (0.86) ranks above lr=0.1's mean (0.85), whose best seed was 0.90.
    assert over_seeds.index("| 0.2 | 0.860±0.000 | 1 of 2 |") < over_seeds.index(
        "| 0.1 | 0.850±0.071 | 2 of 2 |"
    )
    with Image.open(tmp_path / "heatmap.png") as picture:
        picture.verify()


def test_without_matplotlib_the_tables_are_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for job, lr in enumerate(["0.1", "0.2"]):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(f"- lr={lr}\n")
        (tmp_path / str(job) / "metrics.json").write_text('{"status": "ok", "val/acc": 0.9}')
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as without the [sweeps] extra
    monkeypatch.setattr(sys, "argv", ["summary", str(tmp_path)])
    summary.main()
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "summary.csv").is_file()
    assert not (tmp_path / "heatmap.png").exists()
    assert 'pip install "mnist-mlp[sweeps]"' in capsys.readouterr().out


def test_the_command_says_what_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["summary", str(tmp_path)])
    with pytest.raises(SystemExit, match="holds no job dirs"):
        summary.main()


def test_each_unfinished_job_gets_the_command_that_runs_it_on_in_its_folder(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = tmp_path / "sweep"
    run_main(
        "-m", *TINY, "epochs=1", f"data.root={data_root}", "lr=0.1,0.2", f"hydra.sweep.dir={sweep}",
        monkeypatch=monkeypatch,
    )  # fmt: skip
    (stopped, cancelled) = sorted(sweep.glob("*_*"), key=summary.job_number)
    for job_dir, status in ((stopped, "interrupted"), (cancelled, "cancelled")):
        metrics = json.loads((job_dir / "metrics.json").read_text()) | {"status": status}
        (job_dir / "metrics.json").write_text(json.dumps(metrics))
    shutil.rmtree(cancelled / "checkpoints")  # cancelled before its first epoch ended

    said = summary.unfinished(sweep)
    assert said.startswith("2 of 2 jobs did not finish")
    commands = [line.split(": python train.py ", 1)[1] for line in said.splitlines()[1:]]
    assert f"ckpt_path='{stopped}/checkpoints/last.ckpt'" in commands[0]  # resumes
    assert f"hydra.run.dir='{cancelled}'" in commands[1]  # starts again in its folder
    for command in commands:
        run_main(*shlex.split(command), monkeypatch=monkeypatch)
    assert summary.unfinished(sweep) == ""
    assert [
        json.loads((d / "metrics.json").read_text())["status"] for d in (stopped, cancelled)
    ] == [
        "ok",
        "ok",
    ]
    folders = {path for path in sweep.iterdir() if path.is_dir() and not path.name.startswith(".")}
    assert folders == {stopped, cancelled}  # nothing written outside the two job folders
