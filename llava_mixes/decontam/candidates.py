"""The candidate stage of copy detection, counted against a budget before any pair is verified.

Verification (`embedding.verify`) costs tens of milliseconds a pair; a copy embedder's candidates can number in
the billions where its vectors cannot tell pictures apart (a group of book covers or text pages). So every
candidate pair is counted first, by (query label, reference label) (an image group, a benchmark, a source),
and copy detection stops with `TooManyCandidatesError` before verifying anything when the count passes the
budget (`MAX_CANDIDATE_PAIRS`): the error names the labels with the most pairs, the count, the estimated time,
and the ways out. Never an endless silent run.

The search is the exact blocked range search of `decontam.search` (float32 products, every score within
`FLOAT32_TOLERANCE` of the threshold re-checked in float64, which alone decides), done here block by block so
that the pairs are counted as they are found: once past the budget, pairs are counted and no longer kept, so
memory stays bounded (the count past the budget is then the float32 count, an estimate).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from llava_mixes.decontam.search import RECHECK_CHUNK, Matches
from llava_mixes.dedup.search import FLOAT32_TOLERANCE
from llava_mixes.errors import ConfigError, LlavaMixesError
from llava_mixes.vectors import checked_norms

MAX_CANDIDATE_PAIRS = 5_000_000
"""Default budget: the most candidate pairs one copy-detection run verifies (about 35 CPU-hours at
`SECONDS_PER_PAIR`); `max_candidate_pairs=` or the environment variable `BUDGET_VARIABLE` sets another."""
BUDGET_VARIABLE = "LLAVA_MIXES_MAX_CANDIDATE_PAIRS"
SECONDS_PER_PAIR = 0.025
"""CPU seconds one verified pair costs, decoding included, for estimates: 22.2 and 25.5 ms measured on a 2-core AMD
EPYC (`bench/bench_copy_verification.py`, seeds 23 and 31), rounded up."""
SHOWN_LABELS = 5


class TooManyCandidatesError(LlavaMixesError, RuntimeError):
    """Copy detection has more candidate pairs than its budget allows; the message names where they come from,
    how long verifying them would take, and the ways out."""


@dataclass
class CandidateTally:
    """Candidate pairs found so far: in all, and by (query label, reference label)."""

    pairs: int = 0
    by_labels: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, query_codes: np.ndarray, reference_codes: np.ndarray, names: tuple[list[str], list[str]]) -> None:
        """Count pairs given by their labels' codes, `names` being (query label names, reference label names)."""
        self.pairs += len(query_codes)
        if len(query_codes):
            width = len(names[1])
            combined = np.bincount(query_codes * width + reference_codes, minlength=len(names[0]) * width)
            for code in np.flatnonzero(combined).tolist():
                self.by_labels[(names[0][code // width], names[1][code % width])] += int(combined[code])


@dataclass(frozen=True)
class CandidateBudget:
    """The most candidate pairs a copy-detection run may verify, and what a pair costs (for the estimate)."""

    max_pairs: int = MAX_CANDIDATE_PAIRS
    seconds_per_pair: float = SECONDS_PER_PAIR

    @classmethod
    def of(cls, max_pairs: object = None) -> CandidateBudget:
        """The budget `max_pairs`, else the environment variable `BUDGET_VARIABLE`, else the default."""
        name = "max_candidate_pairs"
        if max_pairs is None and os.environ.get(BUDGET_VARIABLE):
            name, max_pairs = BUDGET_VARIABLE, os.environ[BUDGET_VARIABLE]
            try:
                max_pairs = int(str(max_pairs).replace("_", ""))
            except ValueError:
                raise ConfigError(
                    f"{name}={os.environ[BUDGET_VARIABLE]!r} is not allowed; give a whole number of pairs, >= 0"
                ) from None
        if max_pairs is None:
            return cls()
        if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 0:
            raise ConfigError(f"{name}={max_pairs!r} is not allowed; give a whole number of pairs, >= 0")
        return cls(max_pairs)

    def over(self, tally: CandidateTally) -> bool:
        return tally.pairs > self.max_pairs

    def check(self, tally: CandidateTally, what: str, raise_threshold: str) -> None:
        """Raise `TooManyCandidatesError` when `tally` is past the budget. `what`: the candidate test (e.g.
        "cosine >= 0.7 with gradients"); `raise_threshold`: where the caller sets a higher threshold."""
        if not self.over(tally):
            return
        hours = tally.pairs * self.seconds_per_pair / 3600
        cores = min(8, os.cpu_count() or 1)
        top = ", ".join(
            f"{_shown(query)} x {_shown(reference)}: {count:,}"
            for (query, reference), count in tally.by_labels.most_common(SHOWN_LABELS)
        )
        raise TooManyCandidatesError(
            f"copy detection found about {tally.pairs:,} candidate pairs ({what}) to verify, more than the budget "
            f"of {self.max_pairs:,} (max_candidate_pairs); verifying them would take about {hours:,.1f} CPU-hours "
            f"({hours / cores:,.1f} hours on {cores} cores, at {self.seconds_per_pair * 1000:.0f} ms a pair). "
            f"Most pairs: {top}. Ways out: a higher candidate threshold ({raise_threshold}); SSCD weights (a "
            "TorchScript file such as sscd_disc_mixup.torchscript.pt as the copy embedder); or a larger budget "
            f"(the environment variable {BUDGET_VARIABLE}=N for any build, or max_candidate_pairs=N where a function "
            "takes it: decontaminate, source_overlap), nothing is "
            "verified until then"
        )


def _shown(label: str) -> str:
    """A label as the error shows it: as it is, or quoted with escapes where it holds a line break or another
    character that does not print (labels come from folder and file names)."""
    return label if label.isprintable() else repr(label)


def _codes(labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct labels (sorted) and each label's index among them."""
    names = sorted(set(labels))
    index = {name: code for code, name in enumerate(names)}
    return names, np.fromiter((index[label] for label in labels), dtype=np.int64, count=len(labels))


def candidate_pairs(
    queries: np.ndarray,
    references: np.ndarray,
    threshold: float,
    query_labels: Sequence[str],
    reference_labels: Sequence[str],
    budget: CandidateBudget,
    tally: CandidateTally,
    *,
    earlier_only: bool = False,
    wanted: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    block_size: int = 1024,
    tile_size: int = 16384,
) -> Matches:
    """Every (query, reference) pair at float64 cosine >= `threshold` (see the module docstring), counted into
    `tally` by label; once `tally` is past `budget`, pairs are counted and not kept (the `Matches` returned are
    then incomplete: call `budget.check` before using them). `earlier_only`: queries and references are the same
    vectors and only pairs with reference < query count; `wanted(query, reference)`: a mask of the pairs that
    count (others are neither kept nor counted)."""
    if queries.shape[1:] != references.shape[1:]:
        raise ValueError(f"queries have shape {queries.shape} and references {references.shape}: dimensions differ")
    query_names, query_codes = _codes(query_labels)
    reference_names, reference_codes = _codes(reference_labels)
    names = (query_names, reference_names)
    cutoff = threshold - FLOAT32_TOLERANCE
    query_norms, reference_norms = checked_norms(queries), checked_norms(references)
    unit_queries = (queries.astype(np.float32) / query_norms[:, None].astype(np.float32)).astype(np.float32)
    unit_references = (references.astype(np.float32) / reference_norms[:, None].astype(np.float32)).astype(np.float32)
    kept_query: list[np.ndarray] = []
    kept_reference: list[np.ndarray] = []
    for start in range(0, len(queries), block_size):
        block = unit_queries[start : start + block_size]
        for tile_start in range(0, len(references), tile_size):
            if earlier_only and tile_start >= start + len(block):
                break
            rows, cols = np.nonzero(block @ unit_references[tile_start : tile_start + tile_size].T >= cutoff)
            query, reference = rows + start, cols + tile_start
            if earlier_only:
                keep = reference < query
                query, reference = query[keep], reference[keep]
            if wanted is not None and len(query):
                keep = wanted(query, reference)
                query, reference = query[keep], reference[keep]
            tally.add(query_codes[query], reference_codes[reference], names)
            if not budget.over(tally):
                kept_query.append(query)
                kept_reference.append(reference)
    query = np.concatenate(kept_query) if kept_query else np.empty(0, dtype=np.int64)
    reference = np.concatenate(kept_reference) if kept_reference else np.empty(0, dtype=np.int64)
    if budget.over(tally):
        return Matches(query[:0], reference[:0], np.empty(0))
    similarity = np.empty(len(query), dtype=np.float64)
    for part in range(0, len(query), RECHECK_CHUNK):
        pairs = slice(part, part + RECHECK_CHUNK)
        dots = np.einsum(
            "ij,ij->i", queries[query[pairs]].astype(np.float64), references[reference[pairs]].astype(np.float64)
        )
        similarity[pairs] = dots / (query_norms[query[pairs]] * reference_norms[reference[pairs]])
    hit = similarity >= threshold
    order = np.lexsort((reference[hit], query[hit]))
    return Matches(query[hit][order].astype(np.int64), reference[hit][order].astype(np.int64), similarity[hit][order])
