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

import textwrap
from pathlib import Path

import numpy as np

from mnist_mlp.config.schema import AUTO
from mnist_mlp.sweeps.batch_size_fit import (
    at_first_check,
    auto_against_fixed,
    best_per_batch_size,
    fit_steps,
    fixed,
    measured_noise_scale,
    study_jobs,
)
from mnist_mlp.sweeps.plotting import pyplot


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _outcome(job: dict) -> str:
    if job["status"] != "ok":
        return job["status"]
    return f"{job['target_steps']} steps" if job["target_reached"] else "not reached"


def write_page(sweep_dir: Path, jobs: list[dict], best: dict, fit, noise) -> str:
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
    sizes = sorted({job["batch_size"] for job in jobs} - {AUTO})
    for size in sizes + [AUTO] * any(job["batch_size"] == AUTO for job in jobs):
        tried = sorted((job for job in jobs if job["batch_size"] == size), key=lambda j: j["lr"])
        outcomes = ", ".join(f"{job['lr']:.3g}: {_outcome(job)}" for job in tried)
        if size == AUTO:
            label = "auto (chosen each interval)"
        else:
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
    too_easy = at_first_check(fixed(best))
    if too_easy:
        higher = round(target + (1 - target) / 2, 3)
        answer = (
            f"The target is too easy for these data: batch size{'s' * (len(too_easy) > 1)} "
            f"{', '.join(map(str, too_easy))} reached it at "
            f"{'their' if len(too_easy) > 1 else 'its'} first check, so the steps measure the "
            "check interval, not the batch size, and nothing is fitted. Rerun with a higher "
            f"target, e.g. study.target={higher}."
        )
    elif fit is None:
        reached = (
            f"only {len(fixed(best))} batch size(s) reached the target"
            if len(fixed(best)) < 2
            else ("the steps do not fall with the batch size as the model needs")
        )
        answer = (
            f"No fit of S = S_min (1 + B_crit / B): {reached}; lower study.target or raise epochs."
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
                " The gradient noise scale measured along the way (the median over the batch "
                f"sizes) is **B_simple = {noise:.3g}** (B_crit / B_simple = {b_crit / noise:.2f})."
            )
    if fixed(best) and not too_easy:
        fastest = min(fixed(best).values(), key=lambda job: job["target_seconds"])
        answer += (
            f" On this machine the target was reached fastest in wall time with "
            f"**batch_size={fastest['batch_size']} lr={fastest['lr']:.3g}**: "
            f"{fastest['target_seconds']:.3g} s of training, {fastest['target_steps']} steps."
        )
    auto = auto_against_fixed(best)
    if auto and not too_easy:
        answer += f" With {auto}"
    lines += [answer, "", "![steps, examples and seconds to the target](batch_size.png)", ""]
    (sweep_dir / "batch_size.md").write_text("\n".join(lines))
    return answer


def write_picture(sweep_dir: Path, jobs: list[dict], best: dict, fit, noise, answer: str) -> None:
    """Steps, examples and seconds to the target and the best lr against the batch size, and the
    noise scale over training beside the fitted B_crit."""
    plt = pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    auto, best = best.get(AUTO), fixed(best)
    jobs = [job for job in jobs if job["batch_size"] != AUTO]
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
        if auto is not None:
            axis.axhline(auto[key], color="k", lw=1.2, label="batch_size=auto")
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
        noise_axis.axhline(noise, color="tab:red", ls=":", label=f"median B_simple {noise:.3g}")
    if auto is not None:  # what auto measured and the batch it chose from it, interval by interval
        trace = auto["batch_size_trace"]
        examples = [entry[1] for entry in trace]
        noise_axis.plot(examples, [entry[2] for entry in trace], color="k", lw=1, ls="-.",
                        label="auto: its B_simple")  # fmt: skip
        noise_axis.step(examples, [entry[3] for entry in trace], where="post", color="k", lw=2.5,
                        label="auto: its batch size")  # fmt: skip
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
    fit = None if at_first_check(fixed(best)) else fit_steps(fixed(best))
    noise = measured_noise_scale(fixed(best))
    answer = write_page(sweep_dir, jobs, best, fit, noise)
    write_picture(sweep_dir, jobs, best, fit, noise, answer)
    return answer
