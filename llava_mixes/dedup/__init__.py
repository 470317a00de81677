"""Near-duplicate removal on vectors and ids: `deduplicate` (a row selection), the exact greedy search,
the approximate ivf search and the one-pass threshold sweep. Vectors come from a dataset column or a
`VectorSource`; nothing here knows embedders, builders or sources."""

from llava_mixes.dedup.deduplicate import (
    SCOPES,
    SEARCHES,
    THRESHOLDS,
    VectorSource,
    check_threshold,
    deduplicate,
)
from llava_mixes.dedup.search import greedy_keep_first

__all__ = [
    "SCOPES",
    "SEARCHES",
    "THRESHOLDS",
    "VectorSource",
    "check_threshold",
    "deduplicate",
    "greedy_keep_first",
]
