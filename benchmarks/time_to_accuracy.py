"""Whole-process wall time and test accuracy of `python train.py` under several configs, side by
side (the runs alternate, so the machine's drifts hit every config alike).

    python benchmarks/time_to_accuracy.py --data-root /tmp/fmnist --repeats 3 \
        --config "old default: batch_size=64 lr=0.1 epochs=10" --config "default:"

Each run is a fresh `python train.py data.dataset=... data.root=... <overrides>` as a user types it
(imports, data loading, training, testing, pictures); its own metrics.json gives the test
accuracy and the seconds spent inside the run, and the rest is start-up. Prints a table of
medians; writes every run to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(data: list[str], overrides: list[str], run_dir: Path) -> dict:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *data, *overrides, f"hydra.run.dir={run_dir}"],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "run_s": metrics["wall_seconds"],
        "test_acc": metrics["test/acc"],
        "torch_threads": metrics["torch_threads"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", type=Path, default=ROOT / "data")
    parser.add_argument("--dataset", default="FashionMNIST")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        help='"name: key=value ...", Hydra overrides on top of the defaults',
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "time_to_accuracy.json")
    args = parser.parse_args()
    data = [f"data.dataset={args.dataset}", f"data.root={args.data_root.resolve()}"]
    configs = {name.strip(): rest.split() for name, rest in (c.split(":", 1) for c in args.config)}
    workdir = Path(tempfile.mkdtemp(prefix="mnist-mlp-time-"))
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for repeat in range(args.repeats):
        for number, (name, overrides) in enumerate(configs.items()):
            run = run_once(data, overrides, workdir / f"config{number}-run{repeat}")
            runs[name].append(run)
            print(f"{name} #{repeat + 1}: {run}", flush=True)
    print(f"\n{args.dataset}, {args.repeats} runs each, medians")
    print("| config | overrides | test/acc | whole process (s) | in the run (s) | start-up (s) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, overrides in configs.items():
        median = {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]}
        print(
            f"| {name} | `{' '.join(overrides) or '(none)'}` | {median['test_acc']:.2%} "
            f"| {median['wall_s']:.1f} | {median['run_s']:.1f} "
            f"| {median['wall_s'] - median['run_s']:.1f} |"
        )
    args.out.write_text(json.dumps({"dataset": args.dataset, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
