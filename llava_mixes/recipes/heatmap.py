"""The overlap heatmap, as PNG bytes (matplotlib's Agg canvas, no display)."""

from __future__ import annotations

import io

import numpy as np

from llava_mixes.extras import require
from llava_mixes.recipes.overlap import Overlap


def overlap_png(overlap: Overlap) -> bytes:
    """Per ordered pair of sources, the share of the row source's distinct pictures with a picture of the column
    source at or above the threshold (colour), with the count and the byte-identical count written in the cell."""
    near = np.asarray(overlap.near, dtype=np.float64)
    images = np.maximum(np.asarray(overlap.images, dtype=np.float64), 1.0)
    share = near / images[:, None]
    size = 1.6 + 1.1 * len(overlap.sources)
    figure = require("matplotlib.figure").Figure(figsize=(size + 1.5, size), dpi=100, layout="constrained")
    axes = figure.subplots()
    picture = axes.imshow(share, vmin=0.0, vmax=1.0, cmap="viridis")
    figure.colorbar(picture, ax=axes, label="share of the row source's pictures")
    ticks = range(len(overlap.sources))
    axes.set_xticks(ticks, overlap.sources, rotation=30, ha="right")
    axes.set_yticks(ticks, overlap.sources)
    axes.set_xlabel("has a copy in")
    axes.set_ylabel("pictures of")
    for row in ticks:
        for column in ticks:
            colour = "black" if share[row, column] > 0.6 else "white"
            text = f"{overlap.near[row][column]:,}\n({overlap.exact[row][column]:,} same)"
            axes.text(column, row, text, ha="center", va="center", fontsize=8, color=colour)
    axes.set_title(f"pictures shared at cosine >= {overlap.threshold:g}")
    canvas = require("matplotlib.backends.backend_agg").FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()
