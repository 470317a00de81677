"""The report's figures, as PNG bytes (matplotlib's Agg canvas, no display): images kept per group against
the threshold, and per group a histogram of each image's nearest-neighbour similarity."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from llava_mixes.extras import require
from llava_mixes.report.analysis import SweepTable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _png(figure: Figure) -> bytes:
    canvas = require("matplotlib.backends.backend_agg").FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def _mark_thresholds(axes: Axes, shown: Sequence[float]) -> None:
    for threshold in shown:
        axes.axvline(threshold, color="0.35", linestyle=":", linewidth=1)


def sweep_png(tables: Mapping[str, SweepTable], scope: str, shown: Sequence[float]) -> bytes:
    """Percent of each group's images kept at each threshold under `scope`, with the total of every scope."""
    figure = require("matplotlib.figure").Figure(figsize=(9, 4.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    table = tables[scope]
    kept = np.asarray(table.kept_images, dtype=np.float64)
    images = np.asarray(table.images, dtype=np.float64)
    for column, group in enumerate(table.groups):
        axes.plot(table.thresholds, 100 * kept[:, column] / max(images[column], 1), label=group, linewidth=1.4)
    for name, other in tables.items():
        total = np.asarray(other.kept_images, dtype=np.float64).sum(axis=1)
        style = "-" if name == scope else "--"
        axes.plot(
            other.thresholds,
            100 * total / max(images.sum(), 1),
            "k" + style,
            linewidth=2.2,
            label=f"all ({name} scope)",
        )
    _mark_thresholds(axes, shown)
    axes.set_xlim(0.5, 1.0)
    axes.set_xlabel("cosine threshold (an image is removed at or above it)")
    axes.set_ylabel("images kept (%)")
    axes.set_title(f"Images kept per group, {scope} scope")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def nearest_png(nearest: Mapping[str, np.ndarray], shown: Sequence[float], low: float = 0.0) -> bytes:
    """One histogram per group of each image's highest similarity to another image of its group, from `low`
    (the first bar also holds the values below it, which the sweep did not look for)."""
    groups = [group for group, values in nearest.items() if len(values)]
    columns = min(3, max(len(groups), 1))
    rows = max(math.ceil(len(groups) / columns), 1)
    figure = require("matplotlib.figure").Figure(figsize=(3.2 * columns, 2.1 * rows), dpi=100, layout="constrained")
    bins = np.linspace(low, 1.0, 41)
    for index, group in enumerate(groups):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.hist(np.clip(nearest[group], low, 1.0), bins=bins, color="#4477aa")
        _mark_thresholds(axes, shown)
        axes.set_title(f"{group} ({len(nearest[group]):,} images)", fontsize=9)
        axes.tick_params(labelsize=7)
    below = f" (first bar: {low:g} or less)" if low > 0 else ""
    figure.suptitle(f"Nearest-neighbour cosine similarity within each group{below}", fontsize=10)
    return _png(figure)
