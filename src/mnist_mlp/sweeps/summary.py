"""A sweep at a glance: summary.csv, summary.md (best first) and heatmap.png of val/acc; for a
batch-size study also batch_size.md and .png (mnist_mlp.sweeps.batch_size_report).

Written by the Hydra callback when a multirun ends, or rebuilt for any sweep dir with
    python -m mnist_mlp.sweeps.summary outputs/multirun/<date>/<time>
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from mnist_mlp.config.command_line import last_checkpoint
from mnist_mlp.sweeps.batch_size_report import write_report
from mnist_mlp.sweeps.plotting import NO_PICTURES, pyplot, score_label, write_heatmap
from mnist_mlp.sweeps.rows import (
    SCORE_COLUMNS,
    best_first,
    job_number,
    job_rows,
    over_seeds,
    swept_keys,
)

UNFINISHED = ("cancelled", "interrupted")  # jobs to run on: stopped by a signal or by Slurm


def write_table(sweep_dir: Path, keys: list[str], rows: list[dict]) -> None:
    """summary.csv with every overridden key; summary.md with the swept ones, best first."""
    with open(sweep_dir / "summary.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["job", *keys, *SCORE_COLUMNS], restval="")
        writer.writeheader()
        writer.writerows(rows)
    swept = swept_keys(keys, rows)
    fixed = [f"`{key}={rows[0][key]}`" for key in keys if key not in swept and key in rows[0]]
    # "batch sizes" only where a batch_size=auto job chose them
    scores = [c for c in SCORE_COLUMNS if c != "batch sizes" or any(row[c] for row in rows)]
    columns = ["job", *swept, *scores]

    def cell(value: object) -> str:
        if value is None:
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = [
        f"# Sweep {sweep_dir}: {len(rows)} jobs, best val/acc first",
        "",
        f"Every job: {', '.join(fixed) or 'no other overrides'}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
        *("| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in best_first(rows)),
    ]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")


def summarise(sweep_dir: Path) -> list[dict]:
    """Write summary.csv, summary.md and heatmap.png into sweep_dir; return the rows. A sweep
    over `seed` shows each setting's mean and standard deviation over its seeds (not the luckiest
    seed) in the heatmap and below the table."""
    keys, rows = job_rows(sweep_dir)
    if not rows:
        raise FileNotFoundError(f"{sweep_dir} holds no job dirs (<n>/.hydra/overrides.yaml)")
    write_table(sweep_dir, keys, rows)
    swept = swept_keys(keys, rows)
    if "seed" in swept:
        settings = [key for key in swept if key != "seed"]
        merged = over_seeds(rows, settings)
        write_seed_table(sweep_dir, settings, merged)
        write_heatmap(sweep_dir, settings, merged)
    else:
        write_heatmap(sweep_dir, swept, rows)
    return rows


def write_seed_table(sweep_dir: Path, settings: list[str], merged: list[dict]) -> None:
    """Below summary.md's table: each setting's val/acc as mean ± std over its seeds."""
    columns = [*settings, "val/acc mean ± std", "seeds ok"]
    lines = [
        "",
        "## Over the seeds, best mean first",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    for row in best_first(merged):
        score = score_label(row)
        lines.append(
            "| " + " | ".join([*(str(row[k]) for k in settings), score, row["seeds"]]) + " |"
        )
    with open(sweep_dir / "summary.md", "a") as file:
        file.write("\n".join(lines) + "\n")


def summarise_sweep(sweep_dir: Path) -> list[str]:
    """Everything a sweep ends with (the tables, the pictures, a batch-size study's page); returns
    what to tell the user, a line each."""
    rows = summarise(sweep_dir)
    failed = sum(row["status"] != "ok" for row in rows)
    lines = [
        f"{len(rows)} jobs ({failed} not ok): {sweep_dir}/summary.md, heatmap.png, summary.csv"
    ]
    if pyplot() is None:
        lines.append(NO_PICTURES)
    answer = write_report(sweep_dir)
    if answer:
        lines.append(f"A batch-size study: {sweep_dir}/batch_size.md, batch_size.png\n{answer}")
    return lines


def unfinished(sweep_dir: Path) -> str:
    """What to say of the jobs that were cancelled or interrupted: one sentence and each job's
    command to resume it (from its last finished epoch) or run it again; '' if there are none."""
    commands = []
    sweep_dir = sweep_dir.absolute()  # commands that work from any folder
    metrics_files = sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: job_number(p.parent))
    for metrics_file in metrics_files:
        status = json.loads(metrics_file.read_text()).get("status")
        if status not in UNFINISHED:
            continue
        job_dir = metrics_file.parent
        items = [str(item) for item in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")]
        last = last_checkpoint(job_dir)  # resume in the job's folder, or start it again there
        items.append(f"ckpt_path='{last}'" if last.is_file() else f"hydra.run.dir='{job_dir}'")
        shell = [f'"{item}"' if any(c in item for c in "'[], ") else item for item in items]
        command = f"python train.py {' '.join(shell)}"
        commands.append(f"  job {job_number(job_dir)} ({status}): {command}")
    if not commands:
        return ""
    return (
        f"{len(commands)} of {len(metrics_files)} jobs did not finish; the others' results are "
        "kept. Run each on with its command below (in the job's folder, from its last finished "
        "epoch where there is one), then python -m mnist_mlp.sweeps.summary "
        f"{sweep_dir} brings the summary up to date:\n" + "\n".join(commands)
    )


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        raise SystemExit(
            "Usage: python -m mnist_mlp.sweeps.summary <sweep dir>, e.g. outputs/multirun/..."
        )
    try:
        print("\n".join(summarise_sweep(Path(sys.argv[1]))))
    except FileNotFoundError as error:
        raise SystemExit(f"{error}: give the folder a multirun wrote.") from None


if __name__ == "__main__":
    main()
