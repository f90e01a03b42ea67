"""A sweep at a glance: summary.csv, summary.md (best first) and heatmap.png of val/acc; for a
batch-size study also batch_size.md and .png (mnist_mlp.batch_size_report).

Written by the Hydra callback when a multirun ends, or rebuilt for any sweep dir with
    python -m mnist_mlp.summary outputs/multirun/<date>/<time>
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
import sys
from pathlib import Path

from omegaconf import OmegaConf

from mnist_mlp.config import last_checkpoint

# matplotlib comes with the [sweeps] extra; without it the tables are still written.
NO_PICTURES = 'The pictures need matplotlib: pip install "mnist-mlp[sweeps]".'


def pyplot():  # -> matplotlib.pyplot | None
    """matplotlib's pyplot, drawing into files only; None where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, no display needed
    # Not for users: its note that bar labels like "64" are drawn as categories, as intended.
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    return plt


UNFINISHED = ("cancelled", "interrupted")  # jobs to run on: stopped by a signal or by Slurm
SCORE_COLUMNS = ("val/acc", "val/loss", "test/acc", "epochs_run", "wall_seconds", "status")


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def job_number(job_dir: Path) -> int:
    """A job dir's number: the folders are named <number>_<overrides> (conf/train.yaml)."""
    return int(job_dir.name.split("_", 1)[0])


def job_rows(sweep_dir: Path) -> tuple[list[str], list[dict]]:
    """(the overridden keys, one row per job dir) of a sweep; a job without scores is failed."""
    keys: list[str] = []
    rows = []
    job_dirs = [path.parent.parent for path in sweep_dir.glob("*/.hydra/overrides.yaml")]
    for job_dir in sorted(job_dirs, key=job_number):
        overrides = dict(
            item.lstrip("+~").split("=", 1)
            for item in OmegaConf.load(job_dir / ".hydra/overrides.yaml")
        )
        keys += [key for key in overrides if key not in keys]
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        scores = {column: metrics.get(column) for column in SCORE_COLUMNS}
        scores["status"] = metrics.get("status", "failed")
        rows.append({"job": str(job_number(job_dir)), **overrides, **scores})
    return keys, rows


def swept_keys(keys: list[str], rows: list[dict]) -> list[str]:
    """The overridden keys whose value differs between jobs, batch_size and lr first."""
    varying = [key for key in keys if len({row.get(key) for row in rows}) > 1]
    return sorted(varying, key=lambda key: (key not in ("batch_size", "lr"), keys.index(key)))


def _best_first(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: -(row["val/acc"] if row["status"] == "ok" else -1))


def write_table(sweep_dir: Path, keys: list[str], rows: list[dict]) -> None:
    """summary.csv with every overridden key; summary.md with the swept ones, best first."""
    with open(sweep_dir / "summary.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["job", *keys, *SCORE_COLUMNS], restval="")
        writer.writeheader()
        writer.writerows(rows)
    swept = swept_keys(keys, rows)
    fixed = [f"`{key}={rows[0][key]}`" for key in keys if key not in swept and key in rows[0]]
    columns = ["job", *swept, *SCORE_COLUMNS]

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
        *("| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in _best_first(rows)),
    ]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")


def _label(row: dict) -> str:
    if row["status"] != "ok":
        return row["status"]
    spread = f"±{row['val/acc std']:.3f}" if "val/acc std" in row else ""
    return f"{row['val/acc']:.3f}{spread}"


def write_picture(sweep_dir: Path, swept: list[str], rows: list[dict]) -> None:
    """val/acc over the two swept keys (the best over any others), or bars over one."""
    plt = pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(figsize=(7, 5))
    if len(swept) >= 2:
        x_key, y_key = swept[1], swept[0]  # lr across, batch_size down when both are swept
        xs = sorted({row[x_key] for row in rows}, key=_value)
        ys = sorted({row[y_key] for row in rows}, key=_value)
        grid = [[math.nan] * len(xs) for _ in ys]
        labels = [["not run"] * len(xs) for _ in ys]
        for row in _best_first(rows)[::-1]:  # the best of a cell is drawn last, and kept
            i, j = ys.index(row[y_key]), xs.index(row[x_key])
            if row["status"] == "ok" or math.isnan(grid[i][j]):
                grid[i][j] = row["val/acc"] if row["status"] == "ok" else math.nan
                labels[i][j] = _label(row)
        image = axes.imshow(grid, cmap="viridis", aspect="auto")
        best = next((row for row in _best_first(rows) if row["status"] == "ok"), None)
        if best is not None:  # a frame around the best cell
            i, j = ys.index(best[y_key]), xs.index(best[x_key])
            # Magenta: seen on every colour of the map, and not the red of failed cells.
            axes.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=3, ec="magenta"))
        figure.colorbar(image, label="val/acc")
        for i, j in ((i, j) for i in range(len(ys)) for j in range(len(xs))):
            failed = math.isnan(grid[i][j])
            bright = not failed and image.norm(grid[i][j]) > 0.5  # viridis turns yellow there
            axes.text(
                j,
                i,
                labels[i][j],
                ha="center",
                va="center",
                color="red" if failed else "black" if bright else "white",
                weight="bold" if failed else None,
            )
        axes.set_xticks(range(len(xs)), xs)
        axes.set_yticks(range(len(ys)), ys)
        axes.set_xlabel(x_key)
        axes.set_ylabel(y_key)
        others = f" (best over {', '.join(swept[2:])})" if len(swept) > 2 else ""
        axes.set_title(
            f"val/acc by {y_key} and {x_key}{others}\nbest framed in magenta, failed in red"
        )
    else:
        key = swept[0] if swept else "job"
        ordered = sorted(rows, key=lambda row: _value(str(row[key])))
        heights = [row["val/acc"] if row["status"] == "ok" else 0 for row in ordered]
        bars = axes.bar(
            [str(row[key]) for row in ordered],
            heights,
            color=["tab:blue" if row["status"] == "ok" else "tab:red" for row in ordered],
        )
        axes.bar_label(bars, [_label(row) for row in ordered])
        axes.set_xlabel(key)
        axes.set_ylabel("val/acc")
        axes.set_ylim(0, 1.05)
        axes.set_title(f"val/acc by {key}; failed jobs in red")
    figure.tight_layout()
    figure.savefig(sweep_dir / "heatmap.png", dpi=100)
    plt.close(figure)


def over_seeds(rows: list[dict], keys: list[str]) -> list[dict]:
    """One row per setting of `keys`: val/acc as the mean over its seeds that ran ok, with their
    standard deviation and count; status ok if any seed ran ok."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in keys), []).append(row)
    merged = []
    for setting, members in groups.items():
        scores = [row["val/acc"] for row in members if row["status"] == "ok"]
        merged.append(
            dict(zip(keys, setting, strict=True))
            | {
                "job": ",".join(row["job"] for row in members),
                "status": "ok" if scores else members[0]["status"],
                "val/acc": statistics.mean(scores) if scores else None,
                "val/acc std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "seeds": f"{len(scores)} of {len(members)}",
            }
        )
    return merged


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
        write_picture(sweep_dir, settings, merged)
    else:
        write_picture(sweep_dir, swept, rows)
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
    for row in _best_first(merged):
        score = _label(row)
        lines.append(
            "| " + " | ".join([*(str(row[k]) for k in settings), score, row["seeds"]]) + " |"
        )
    with open(sweep_dir / "summary.md", "a") as file:
        file.write("\n".join(lines) + "\n")


def summarise_sweep(sweep_dir: Path) -> list[str]:
    """Everything a sweep ends with (the tables, the pictures, a batch-size study's page); returns
    what to tell the user, a line each."""
    from mnist_mlp.batch_size_report import write_report  # it draws with this module's pyplot

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
        "epoch where there is one), then python -m mnist_mlp.summary "
        f"{sweep_dir} brings the summary up to date:\n" + "\n".join(commands)
    )


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        raise SystemExit(
            "Usage: python -m mnist_mlp.summary <sweep dir>, e.g. outputs/multirun/..."
        )
    try:
        print("\n".join(summarise_sweep(Path(sys.argv[1]))))
    except FileNotFoundError as error:
        raise SystemExit(f"{error}: give the folder a multirun wrote.") from None


if __name__ == "__main__":
    main()
