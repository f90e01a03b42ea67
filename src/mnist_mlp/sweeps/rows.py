"""A sweep's jobs as rows: each job folder's overrides, scores and status."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from omegaconf import OmegaConf

SCORE_COLUMNS = (
    "val/acc", "val/loss", "test/acc", "epochs_run", "wall_seconds", "status", "batch sizes",
)  # fmt: skip


def sort_value(text: str) -> tuple[int, float | str]:
    """Numbers in order, then words (batch_size=auto after the batch sizes)."""
    try:
        return 0, float(text)
    except ValueError:
        return 1, text


def batch_sizes_used(metrics: dict) -> str | None:
    """A batch_size=auto job's batch sizes, e.g. "16 to 256; by epoch 104, 256"; None for a
    fixed batch size."""
    if "batch_size_by_epoch" not in metrics:
        return None
    by_epoch = ", ".join(f"{size:.0f}" for size in metrics["batch_size_by_epoch"])
    return f"{metrics['batch_size_first']} to {metrics['batch_size_last']}; by epoch {by_epoch}"


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
        scores["batch sizes"] = batch_sizes_used(metrics)
        rows.append({"job": str(job_number(job_dir)), **overrides, **scores})
    return keys, rows


def swept_keys(keys: list[str], rows: list[dict]) -> list[str]:
    """The overridden keys whose value differs between jobs, batch_size and lr first."""
    varying = [key for key in keys if len({row.get(key) for row in rows}) > 1]
    return sorted(varying, key=lambda key: (key not in ("batch_size", "lr"), keys.index(key)))


def best_first(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: -(row["val/acc"] if row["status"] == "ok" else -1))


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
