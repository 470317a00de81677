"""Progress bars on long work only, and log lines that never land on a bar's line.

`datasets` draws a bar for each of its own dataset operations (a cast, flattening the indices, a filter), however
short. `quiet(rows)` hides them with `datasets`' documented switch (`disable_progress_bars`) around one internal
step over fewer than `QUIET_ROWS` rows, which takes well under a second; a step over more rows keeps its bars, and
so does every bar of this package's long work (normalising, embedding, writing). The switch is process-wide: a bar
another thread opens while a quiet step runs is hidden too. `HF_DATASETS_DISABLE_PROGRESS_BARS=0` keeps every bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import datasets

QUIET_ROWS = 100_000
"""The rows under which `datasets`' own bars of an internal step are hidden (a cast of 100,000 rows takes about a
second)."""


@contextmanager
def quiet(rows: int) -> Iterator[None]:
    """Hide `datasets`' progress bars while a step over `rows` rows runs, where `rows < QUIET_ROWS`; they are shown
    again after it (unless they were hidden before it, or the environment forces them on)."""
    forced_on = datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is False
    if rows >= QUIET_ROWS or forced_on or datasets.utils.are_progress_bars_disabled():
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()
