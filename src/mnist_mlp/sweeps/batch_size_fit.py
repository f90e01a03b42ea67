"""The batch-size study's numbers, from each job's metrics.json: the best lr of each batch size,
the fit of S = S_min (1 + B_crit / B) to their steps to the target (McCandlish et al. 2018), and
the gradient noise scale measured along the way."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from mnist_mlp.config.schema import steps_for


def study_jobs(sweep_dir: Path) -> list[dict]:
    """The metrics.json of every job of the sweep that measured steps to a target."""
    jobs = []
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if "target_reached" in metrics:
            jobs.append(metrics | {"job": path.parent.name.split("_", 1)[0]})
    return jobs


def best_per_batch_size(jobs: list[dict]) -> dict[int, dict]:
    """For each batch size, the job that reached the target in the fewest steps (then seconds)."""
    best: dict[int, dict] = {}
    for job in jobs:
        if job["status"] != "ok" or not job["target_reached"]:
            continue
        size = job["batch_size"]
        key = (job["target_steps"], job["target_seconds"])
        if size not in best or key < (best[size]["target_steps"], best[size]["target_seconds"]):
            best[size] = job
    return dict(sorted(best.items()))


def fit_steps(best: dict[int, dict]) -> tuple[float, float] | None:
    """(S_min, B_crit) of S = S_min (1 + B_crit / B), fitted by least squares on relative errors
    (the steps span orders of magnitude); None with fewer than two points or an unphysical fit."""
    if len(best) < 2:
        return None
    sizes = np.array(list(best), dtype=float)
    steps = np.array([job["target_steps"] for job in best.values()], dtype=float)
    # S = S_min + E_min / B is linear in (S_min, E_min); divide each row by S for relative errors.
    rows = np.stack([np.ones_like(sizes), 1 / sizes], axis=1) / steps[:, None]
    (s_min, e_min), *_ = np.linalg.lstsq(rows, np.ones_like(steps), rcond=None)
    if s_min <= 0 or e_min <= 0:
        return None
    return float(s_min), float(e_min / s_min)


def at_first_check(best: dict[int, dict]) -> list[int]:
    """The batch sizes whose best job reached the target at its very first check: its steps then
    measure the check interval, not what the batch size needs."""
    return [
        size
        for size, job in best.items()
        if job["target_steps"] <= steps_for(job["study.every_examples"], size)
    ]


def measured_noise_scale(best: dict[int, dict]) -> float | None:
    """The median over the best jobs of each one's B_simple over its run to the target. Not the
    mean: at the smallest batches a run's few measurements estimate |G|^2 so noisily that its
    ratio can be off by orders of magnitude (or not measurable), and one such run would set it."""
    values = [job["noise_b_simple"] for job in best.values() if job.get("noise_b_simple")]
    return statistics.median(values) if values else None
