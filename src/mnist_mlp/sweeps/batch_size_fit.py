"""The batch-size study's numbers, from each job's metrics.json: the best lr of each batch size,
the fit of S = S_min (1 + B_crit / B) to their steps to the target (McCandlish et al. 2018), and
the gradient noise scale measured along the way."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from mnist_mlp.config.schema import AUTO


def study_jobs(sweep_dir: Path) -> list[dict]:
    """The metrics.json of every job of the sweep that measured steps to a target."""
    jobs = []
    for path in sorted(sweep_dir.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        if "target_reached" in metrics:
            jobs.append(metrics | {"job": path.parent.name.split("_", 1)[0]})
    return jobs


def best_per_batch_size(jobs: list[dict]) -> dict[int | str, dict]:
    """For each batch size (and auto, last), the job that reached the target in the fewest steps
    (then seconds)."""
    best: dict[int | str, dict] = {}
    for job in jobs:
        if job["status"] != "ok" or not job["target_reached"]:
            continue
        size = job["batch_size"]
        key = (job["target_steps"], job["target_seconds"])
        if size not in best or key < (best[size]["target_steps"], best[size]["target_seconds"]):
            best[size] = job
    ordered = {size: best[size] for size in sorted(fixed(best))}
    return ordered | ({AUTO: best[AUTO]} if AUTO in best else {})


def fixed(best: dict[int | str, dict]) -> dict[int, dict]:
    """The fixed batch sizes' entries, without auto's."""
    return {size: job for size, job in best.items() if size != AUTO}


def auto_against_fixed(best: dict[int | str, dict]) -> str | None:
    """How batch_size=auto's best job did against the fixed batch sizes' best (issue: no more
    wall seconds than the fastest fixed pair, fewer SGD steps than any fixed batch that took no
    more examples); None without an auto job that reached the target."""
    auto, others = best.get(AUTO), fixed(best)
    if auto is None or not others:
        return None
    fastest = min(others.values(), key=lambda job: job["target_seconds"])
    frugal = [job for job in others.values() if job["target_examples"] <= auto["target_examples"]]
    fewest = min(frugal, key=lambda job: job["target_steps"]) if frugal else None
    text = (
        f"batch_size=auto (lr {auto['lr']:.3g} at batch 64) the target was reached in "
        f"{auto['target_steps']} SGD steps, {auto['target_examples']} examples and "
        f"{auto['target_seconds']:.3g} s, choosing batches from {auto['batch_size_first']} to "
        f"{max(entry[3] for entry in auto['batch_size_trace'])}: "
        f"{auto['target_seconds'] / fastest['target_seconds']:.2f}x the seconds of the fastest "
        f"fixed pair (batch_size={fastest['batch_size']} lr={fastest['lr']:.3g}, "
        f"{fastest['target_seconds']:.3g} s)"
    )
    if fewest is None:
        return text + "; no fixed batch size reached it with as few examples."
    return text + (
        f"; the fixed batch size that took the fewest steps with no more examples "
        f"(batch_size={fewest['batch_size']}, {fewest['target_examples']} examples) took "
        f"{fewest['target_steps']} steps ({auto['target_steps'] / fewest['target_steps']:.2f}x)."
    )


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
    # .get: a sweep run before checks were counted has no target_checks (never "too easy").
    return [size for size, job in best.items() if job.get("target_checks") == 1]


def measured_noise_scale(best: dict[int, dict]) -> float | None:
    """The median over the best jobs of each one's B_simple over its run to the target. Not the
    mean: at the smallest batches a run's few measurements estimate |G|^2 so noisily that its
    ratio can be off by orders of magnitude (or not measurable), and one such run would set it."""
    values = [job["noise_b_simple"] for job in best.values() if job.get("noise_b_simple")]
    return statistics.median(values) if values else None
