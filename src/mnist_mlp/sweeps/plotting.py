"""The sweep pictures: matplotlib drawing into files, and heatmap.png of val/acc."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from mnist_mlp.sweeps.rows import best_first, sort_value

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


def score_label(row: dict) -> str:
    if row["status"] != "ok":
        return row["status"]
    spread = f"±{row['val/acc std']:.3f}" if "val/acc std" in row else ""
    return f"{row['val/acc']:.3f}{spread}"


def write_heatmap(sweep_dir: Path, swept: list[str], rows: list[dict]) -> None:
    """val/acc over the two swept keys (the best over any others), or bars over one."""
    plt = pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(figsize=(7, 5))
    if len(swept) >= 2:
        x_key, y_key = swept[1], swept[0]  # lr across, batch_size down when both are swept
        xs = sorted({row[x_key] for row in rows}, key=sort_value)
        ys = sorted({row[y_key] for row in rows}, key=sort_value)
        grid = [[math.nan] * len(xs) for _ in ys]
        labels = [["not run"] * len(xs) for _ in ys]
        for row in best_first(rows)[::-1]:  # the best of a cell is drawn last, and kept
            i, j = ys.index(row[y_key]), xs.index(row[x_key])
            if row["status"] == "ok" or math.isnan(grid[i][j]):
                grid[i][j] = row["val/acc"] if row["status"] == "ok" else math.nan
                labels[i][j] = score_label(row)
        image = axes.imshow(grid, cmap="viridis", aspect="auto")
        best = next((row for row in best_first(rows) if row["status"] == "ok"), None)
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
        ordered = sorted(rows, key=lambda row: sort_value(str(row[key])))
        heights = [row["val/acc"] if row["status"] == "ok" else 0 for row in ordered]
        bars = axes.bar(
            [str(row[key]) for row in ordered],
            heights,
            color=["tab:blue" if row["status"] == "ok" else "tab:red" for row in ordered],
        )
        axes.bar_label(bars, [score_label(row) for row in ordered])
        axes.set_xlabel(key)
        axes.set_ylabel("val/acc")
        axes.set_ylim(0, 1.05)
        axes.set_title(f"val/acc by {key}; failed jobs in red")
    figure.tight_layout()
    figure.savefig(sweep_dir / "heatmap.png", dpi=100)
    plt.close(figure)
