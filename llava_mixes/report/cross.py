"""The report's cross-group pass, as the user chooses it (`CROSS_GROUP_MODES`):

- `exact`: the global sweep over every distinct image (the global-scope table, and every image's most similar
  earlier image in another group). The costliest part of a report: 1.7x the group pass at 200K images on 2 cores
  (2.3x at the 665K mix's size before the sweep used both cores).
- `sample`: the same pass over a fixed pseudo-random share of the distinct images (each content in or out with all
  its paths, the same share on every run). A pass is quadratic, so it costs about the share squared of `exact`.
  It finds an image's cross-group match only where both are in the share, so its recall is measured: up to
  `RECALL_QUERIES` images of the share are compared, exactly, with every earlier image of another group, and the
  recall is the part of those with a match at the lowest shown threshold whose match the sampled pass found too.
  The same check estimates how many images of the whole set have such a match. There is no global-scope table.
- `skip`: no cross-group pass (the group tables and pairs only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llava_mixes.dedup.search import FLOAT32_TOLERANCE
from llava_mixes.errors import ConfigError, unknown_choice
from llava_mixes.vectors import checked_norms, exact_cosines

CROSS_GROUP_MODES = ("exact", "sample", "skip")
DEFAULT_SAMPLE = 0.3
RECALL_QUERIES = 1000
_CHUNK = 32768  # images scored against the queries at a time


@dataclass(frozen=True)
class CrossGroup:
    """How the cross-group pass ran: its mode, the share of images it saw, and for `sample` the recall check."""

    mode: str
    share: float = 1.0
    images: int = 0
    threshold: float | None = None
    queries: int = 0
    """Images of the share checked against every earlier image."""
    matched: int = 0
    """Of those, how many have a cross-group match at `threshold` among all earlier images."""
    found: int = 0
    """Of those, how many the sampled pass matched at `threshold` too."""
    total_images: int = 0

    @property
    def recall(self) -> float | None:
        """found / matched (None when no query had a match)."""
        return self.found / self.matched if self.matched else None

    @property
    def estimated_matched(self) -> int | None:
        """Images of the whole set with a cross-group match at `threshold`, estimated from the queries."""
        return round(self.matched / self.queries * self.total_images) if self.queries else None

    def describe(self) -> str:
        """One sentence for the report page and the CLI."""
        if self.mode != "sample":
            return f"cross-group pass: {self.mode}"
        recall = "no query had a match" if self.recall is None else f"recall {self.recall:.3f}"
        return (
            f"cross-group pass on a {self.share:.0%} sample ({self.images:,} images): {recall} "
            f"({self.found} of {self.matched} of {self.queries:,} checked images with a match at {self.threshold:g} "
            f"among all earlier images of other groups); about {self.estimated_matched:,} of {self.total_images:,} "
            "images have one"
        )


def check_cross_group(mode: object, share: object) -> str:
    """`mode` as one of `CROSS_GROUP_MODES` (True means `exact` and False `skip`, as the flag was once a bool);
    `ConfigError` for another mode, or a sample share outside (0, 1]."""
    if mode is True or mode is False:
        return "exact" if mode else "skip"
    if mode not in CROSS_GROUP_MODES:
        raise unknown_choice("cross_group", mode, CROSS_GROUP_MODES)
    if mode == "sample" and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share <= 1.0):
        raise ConfigError(f"cross_group_sample={share!r} is not allowed; it must be a number in (0, 1]")
    return str(mode)


def in_share(contents: np.ndarray, share: float) -> np.ndarray:
    """Whether each content id is in the fixed pseudo-random `share` (splitmix64 of the id)."""
    mixed = contents.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    mixed = (mixed ^ (mixed >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    mixed = (mixed ^ (mixed >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed ^= mixed >> np.uint64(31)
    return (mixed >> np.uint64(11)).astype(np.float64) < share * 2.0**53


def measure_recall(
    vectors: np.ndarray,
    groups: np.ndarray,
    sampled: np.ndarray,
    found: np.ndarray,
    threshold: float,
    queries: int | None = None,
) -> tuple[int, int, int]:
    """For up to `queries` of the `sampled` positions (spread evenly), whether any earlier item of another group has
    an exact cosine >= `threshold` (every item in `vectors` order, float32 products, candidates re-checked in
    float64), and whether the sampled pass `found` one (a bool per sampled position). Returns (queries, matched,
    matched and found). `queries` defaults to `RECALL_QUERIES`."""
    if not len(sampled):
        return 0, 0, 0
    count = min(queries or RECALL_QUERIES, len(sampled))
    picked = np.unique(np.linspace(0, len(sampled) - 1, count).astype(np.int64))
    positions = sampled[picked]
    norms = checked_norms(vectors)
    unit = (vectors[positions].astype(np.float64) / norms[positions, None]).astype(np.float32)
    cutoff = np.float32(threshold - FLOAT32_TOLERANCE)
    candidates: list[list[np.ndarray]] = [[] for _ in positions]
    for start in range(0, int(positions.max()), _CHUNK):
        stop = min(start + _CHUNK, int(positions.max()))
        chunk = (vectors[start:stop].astype(np.float64) / norms[start:stop, None]).astype(np.float32)
        scores = unit @ chunk.T
        eligible = (np.arange(start, stop)[None, :] < positions[:, None]) & (
            groups[start:stop][None, :] != groups[positions][:, None]
        )
        rows, columns = np.nonzero((scores >= cutoff) & eligible)
        for row in np.unique(rows).tolist():
            candidates[row].append(columns[rows == row] + start)
    matched = np.zeros(len(positions), dtype=bool)
    for row, parts in enumerate(candidates):
        if parts:
            exact = exact_cosines(vectors, norms, int(positions[row]), np.concatenate(parts))
            matched[row] = bool((exact >= threshold).any())
    return len(positions), int(matched.sum()), int((matched & found[picked]).sum())


def sample_found(vectors: np.ndarray, sampled: np.ndarray, match: np.ndarray, threshold: float) -> np.ndarray:
    """Per sampled position, whether the sampled pass's match (an index into `sampled`, -1 for none) reaches
    `threshold` by its exact cosine."""
    found = np.zeros(len(sampled), dtype=bool)
    norms = checked_norms(vectors)
    for index in np.flatnonzero(match >= 0).tolist():
        other = np.asarray([sampled[match[index]]], dtype=np.int64)
        found[index] = bool(exact_cosines(vectors, norms, int(sampled[index]), other)[0] >= threshold)
    return found
