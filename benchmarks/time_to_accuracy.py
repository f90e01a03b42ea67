"""Whole-process wall time (and test accuracy) of `python train.py` under several configs, beside
other commands, side by side: the runs alternate, so the machine's drifts hit every one alike.

    python benchmarks/time_to_accuracy.py --data-root data --dataset MNIST --repeats 3 \\
        --config "default:" --command "import torch: python -c 'import torch'" \\
        --baseline "import torch"
    python benchmarks/time_to_accuracy.py --data-root data --dataset MNIST --threads 1 \\
        --config "notes: experiment=notes" \\
        --command "network.py: python benchmarks/network_py.py --data-root data" \\
        --baseline network.py

Each config is a fresh `python train.py data.dataset=... data.root=... <overrides>` as a user
types it (imports, data loading, training, testing, pictures); its metrics.json gives the test
accuracy and the seconds inside the run, the rest is start-up. A command runs as written (its last
line of output is shown). Prints a table of medians, and each one's ratio to --baseline; writes
every run to --out.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, data_overrides, parser_with_data


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of a command, and the last line it printed."""
    start = time.perf_counter()
    done = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True, env=env)
    lines = done.stdout.strip().splitlines()
    return time.perf_counter() - start, lines[-1] if lines else ""


def run_config(data: list[str], overrides: list[str], run_dir: Path, env: dict) -> dict:
    command = [sys.executable, "train.py", *data, *overrides, f"hydra.run.dir={run_dir}"]
    wall, _ = timed(command, env)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_s": round(wall, 2),
        "run_s": metrics["wall_seconds"],
        "test_acc": metrics["test/acc"],
        "val_acc": metrics["val/acc"],
        "torch_threads": metrics["torch_threads"],
    }


def named(items: list[str]) -> dict[str, str]:
    return {name.strip(): rest.strip() for name, rest in (item.split(":", 1) for item in items)}


def main() -> None:
    parser = parser_with_data(__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every run")
    parser.add_argument("--config", action="append", default=[], help='"name: key=value ..."')
    parser.add_argument("--command", action="append", default=[], help='"name: shell words"')
    parser.add_argument("--baseline", help="the config or command the others are divided by")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "time_to_accuracy.json")
    args = parser.parse_args()
    data = data_overrides(args)
    configs = {name: rest.split() for name, rest in named(args.config).items()}
    commands = {name: shlex.split(rest) for name, rest in named(args.command).items()}
    env = os.environ | ({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})
    workdir = Path(tempfile.mkdtemp(prefix="mnist-mlp-time-"))
    runs: dict[str, list[dict]] = {name: [] for name in [*configs, *commands]}
    for repeat in range(args.repeats):
        for number, (name, overrides) in enumerate(configs.items()):
            run = run_config(data, overrides, workdir / f"config{number}-run{repeat}", env)
            runs[name].append(run)
            print(f"{name} #{repeat + 1}: {run}", flush=True)
        for name, command in commands.items():
            wall, last_line = timed(command, env)
            runs[name].append({"wall_s": round(wall, 2), "printed": last_line})
            print(f"{name} #{repeat + 1}: {wall:.2f} s; {last_line}", flush=True)
    wall = {name: statistics.median(run["wall_s"] for run in done) for name, done in runs.items()}
    threads = f", OMP_NUM_THREADS={args.threads}" if args.threads else ""
    print(f"\n{args.dataset}, {args.repeats} runs each{threads}, medians")
    print("| run | test/acc | whole process (s) | in the run (s) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, done in runs.items():
        ratio = f"{wall[name] / wall[args.baseline]:.2f}x" if args.baseline else "-"
        if name in configs:
            accuracy = f"{statistics.median(run['test_acc'] for run in done):.2%}"
            inside = f"{statistics.median(run['run_s'] for run in done):.1f}"
            label = f"`python train.py {' '.join(configs[name])}`".replace(" `", "`")
        else:
            accuracy, inside, label = "-", "-", f"`{shlex.join(commands[name])}`"
        print(f"| {name}: {label} | {accuracy} | {wall[name]:.1f} | {inside} | {ratio} |")
    args.out.write_text(json.dumps({"dataset": args.dataset, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
