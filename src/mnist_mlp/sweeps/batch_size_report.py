"""The batch-size study's answer: batch_size.md and batch_size.png in the sweep dir.

Written when a sweep of experiment=batch_size ends (or by python -m mnist_mlp.sweeps.summary
<sweep dir>)
from each job's metrics.json: the SGD steps, examples and training seconds to study.target, and
the gradient noise scale measured along the way. McCandlish et al. (2018) predict the steps to a
target as S = S_min (1 + B_crit / B): fitted here to the best lr of each batch size, S_min is the
fewest steps any batch size can take, E_min = S_min B_crit the fewest examples, and B_crit the
batch size where a step's worth and an example's worth are traded evenly. Their model says B_crit
is close to the measured noise scale B_simple; the page reports both.
"""

from __future__ import annotations

import json
import statistics
import textwrap
from pathlib import Path

import numpy as np

from mnist_mlp.sweeps.plotting import pyplot


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


def measured_noise_scale(best: dict[int, dict]) -> float | None:
    """The mean over the best jobs of each one's B_simple over its run to the target."""
    values = [job["noise_b_simple"] for job in best.values() if job.get("noise_b_simple")]
    return statistics.mean(values) if values else None


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _outcome(job: dict) -> str:
    if job["status"] != "ok":
        return job["status"]
    return f"{job['target_steps']} steps" if job["target_reached"] else "not reached"


def write_page(sweep_dir: Path, jobs: list[dict], best: dict[int, dict], fit, noise) -> str:
    """batch_size.md; returns its answer paragraph."""
    first = jobs[0]
    target, training = first["study.target"], first.get("train_examples")
    lines = [
        f"# Which batch size? Sweep {sweep_dir}",
        "",
        f"Each job trained `{first['model.hidden_sizes']}` ({first['model.activation']}, "
        f"{first['loss']}) on {first['data.dataset']} with plain SGD at a constant lr until "
        f"val/acc reached {target} (checked every {first['study.every_examples']} training "
        f"examples) or {first['epochs']} epochs ran out; {len(jobs)} jobs, "
        f"{first['torch_threads']} torch thread(s) each.",
        "",
        "| batch size | best lr | SGD steps | examples | training seconds | measured B_simple "
        "| every lr tried: outcome |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for size in sorted({job["batch_size"] for job in jobs}):
        tried = sorted((job for job in jobs if job["batch_size"] == size), key=lambda j: j["lr"])
        outcomes = ", ".join(f"{job['lr']:.3g}: {_outcome(job)}" for job in tried)
        label = f"{size} (full batch)" if training and size >= training else str(size)
        job = best.get(size)
        if job is None:
            lines.append(f"| {label} | - | - | - | - | - | {outcomes} |")
            continue
        lines.append(
            f"| {label} | {job['lr']:.3g} | {job['target_steps']} | {job['target_examples']} "
            f"| {_cell(job['target_seconds'])} | {_cell(job.get('noise_b_simple'))} "
            f"| {outcomes} |"
        )
    lines += ["", "## The answer", ""]
    if fit is None:
        answer = (
            "Too few batch sizes reached the target to fit S = S_min (1 + B_crit / B): "
            "lower study.target or raise epochs."
        )
    else:
        s_min, b_crit = fit
        answer = (
            f"Fitted to the best lr of each batch size, S = S_min (1 + B_crit / B) gives "
            f"S_min = {s_min:.3g} SGD steps, E_min = {s_min * b_crit:.3g} examples and "
            f"**B_crit = {b_crit:.3g}**: below it, doubling the batch nearly halves the steps; "
            "above it, the extra examples are mostly wasted."
        )
        if noise:
            answer += (
                f" The gradient noise scale measured along the way averages **B_simple = "
                f"{noise:.3g}** (B_crit / B_simple = {b_crit / noise:.2f})."
            )
    if best:
        fastest = min(best.values(), key=lambda job: job["target_seconds"])
        answer += (
            f" On this machine the target was reached fastest in wall time with "
            f"**batch_size={fastest['batch_size']} lr={fastest['lr']:.3g}**: "
            f"{fastest['target_seconds']:.3g} s of training, {fastest['target_steps']} steps."
        )
    lines += [answer, "", "![steps, examples and seconds to the target](batch_size.png)", ""]
    (sweep_dir / "batch_size.md").write_text("\n".join(lines))
    return answer


def write_picture(
    sweep_dir: Path, jobs: list[dict], best: dict[int, dict], fit, noise, answer: str
) -> None:
    """Steps, examples and seconds to the target and the best lr against the batch size, and the
    noise scale over training beside the fitted B_crit."""
    plt = pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    sizes = np.array(list(best), dtype=float)
    reached = [j for j in jobs if j["status"] == "ok" and j["target_reached"]]
    curve = np.geomspace(min(j["batch_size"] for j in jobs), max(j["batch_size"] for j in jobs))
    panels = (
        (
            axes[0, 0],
            "target_steps",
            "SGD steps to the target",
            lambda s_min, b: s_min * (1 + b / curve),
        ),
        (
            axes[0, 1],
            "target_examples",
            "examples to the target",
            lambda s_min, b: s_min * b * (1 + curve / b),
        ),
        (axes[0, 2], "target_seconds", "training seconds to the target", None),
    )
    for axis, key, title, model in panels:
        axis.scatter(
            [j["batch_size"] for j in reached],
            [j[key] for j in reached],
            c="0.75",
            s=12,
            label="other lrs",
        )
        axis.plot(sizes, [job[key] for job in best.values()], "o-", label="best lr per batch size")
        if fit is not None and model is not None:
            axis.plot(curve, model(*fit), "k--", label=f"fit: B_crit = {fit[1]:.3g}")
            axis.axvline(fit[1], color="k", lw=0.8, ls=":")
        axis.set(xscale="log", yscale="log", xlabel="batch size", title=title)
        axis.legend(fontsize=8)
    lr_axis = axes[1, 0]
    for outcome, marker, color in (
        ("steps", "o", "0.75"),
        ("not reached", "s", "tab:orange"),
        ("diverged", "x", "tab:red"),
    ):
        tried = [job for job in jobs if _outcome(job).endswith(outcome)]
        lr_axis.scatter(
            [job["batch_size"] for job in tried],
            [job["lr"] for job in tried],
            c=color,
            marker=marker,
            s=18,
            label=f"tried: {'reached' if outcome == 'steps' else outcome}",
        )
    lr_axis.plot(sizes, [job["lr"] for job in best.values()], "o-", label="best")
    lr_axis.set(xscale="log", yscale="log", xlabel="batch size", title="best lr, and the grid")
    lr_axis.legend(fontsize=8)
    noise_axis = axes[1, 1]
    for size, job in best.items():
        trace = [(step * size, value) for step, value in job.get("noise_trace", []) if value]
        if trace:
            noise_axis.plot(*zip(*trace, strict=True), label=f"B={size}", lw=1)
    if fit is not None:
        noise_axis.axhline(fit[1], color="k", ls="--", label=f"fitted B_crit {fit[1]:.3g}")
    if noise:
        noise_axis.axhline(noise, color="tab:red", ls=":", label=f"mean B_simple {noise:.3g}")
    noise_axis.set(
        xscale="log",
        yscale="log",
        xlabel="examples seen",
        title="measured noise scale B_simple during training",
    )
    noise_axis.legend(fontsize=7, ncol=2)
    axes[1, 2].axis("off")
    first = jobs[0]
    axes[1, 2].text(
        0,
        1,
        f"target val/acc {first['study.target']}\n{first['data.dataset']}, "
        f"{first['model.hidden_sizes']}\nplain SGD, constant lr\n\n"
        + textwrap.fill(answer.replace("**", ""), 50),
        va="top",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(sweep_dir / "batch_size.png", dpi=90)
    plt.close(figure)


def write_report(sweep_dir: Path) -> str | None:
    """batch_size.md and .png for a batch-size study; its answer, or None for another sweep."""
    jobs = study_jobs(sweep_dir)
    if not jobs:
        return None
    best = best_per_batch_size(jobs)
    fit, noise = fit_steps(best), measured_noise_scale(best)
    answer = write_page(sweep_dir, jobs, best, fit, noise)
    write_picture(sweep_dir, jobs, best, fit, noise, answer)
    return answer
