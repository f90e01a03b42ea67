"""The benchmarks still run against the code they measure (their figures live in docs, not here)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT, TINY

BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(path for path in BENCHMARKS.glob("*.py") if path.stem != "common")


def load(path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/<script>.py` runs it
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda path: path.stem)
def test_every_benchmark_imports_what_it_measures(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert callable(load(path, monkeypatch).main)


def test_the_lockstep_bare_loop_steps_beside_the_project(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speed = load(BENCHMARKS / "speed.py", monkeypatch)
    args = argparse.Namespace(data_root=data_root, dataset="MNIST", epochs=2, overrides=TINY[:1])
    times = speed.time_lockstep(args, 32, tmp_path)
    # One timed epoch (the first is warm-up), each side with its training stretches and its tail.
    assert len(times["project"]) == len(times["bare"]) == 1
    assert len(times["bare"][0]) == len(times["project"][0]) > 0
    assert len(times["project_tail"]) == len(times["bare_tail"]) == 1
