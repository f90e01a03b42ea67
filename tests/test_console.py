"""What a user sees: each line once, nothing to act on that cannot be acted on, and a command that
fails says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY, run_main


def test_a_run_prints_each_lightning_line_once_and_no_notice_it_cannot_act_on(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    run_main(
        f"data.root={data_root}",
        *TINY,
        f"hydra.run.dir={tmp_path / 'run'}",
        monkeypatch=monkeypatch,
    )
    printed = capfd.readouterr().err
    assert printed.count("GPU available:") == 1  # not also through Lightning's own handler
    assert "Restoring states" not in printed  # the best checkpoint is loaded once, quietly
    assert "INFO: " not in printed  # Lightning's own format
    assert "smaller than the logging interval" not in printed
    assert "💡 Tip" not in printed


def test_a_refused_setting_leaves_no_run_folder(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"batch_size=0 is not allowed"):
        run_main(
            f"data.root={data_root}", *TINY, "batch_size=0", f"hydra.run.dir={run_dir}",
            monkeypatch=monkeypatch,
        )  # fmt: skip
    assert not run_dir.exists()


def test_a_sweep_whose_jobs_all_diverged_is_a_failed_command(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit, match=r"No job of the sweep ended ok \(2 diverged\)"):
        run_main(
            "-m", f"data.root={data_root}", *TINY, "epochs=1", "lr=1e6,1e7",
            f"hydra.sweep.dir={sweep}", monkeypatch=monkeypatch,
        )  # fmt: skip
    assert (sweep / "summary.md").is_file()  # the summary is still written
