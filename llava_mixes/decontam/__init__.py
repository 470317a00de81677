"""Decontamination against evaluation benchmarks: reference pictures from the layouts people keep them in, the
exact blocked search of training pictures against them, and `decontaminate` (train / contaminated splits). Named
benchmark sets (`shipped_sets`: `llava-1.5-evals`, `lmms-eval-images`) are read from a mirror or the Hub cache."""

from llava_mixes.decontam.benchmark_repos import MIRROR_ENV
from llava_mixes.decontam.benchmark_sets import BenchmarkEntry, BenchmarkSet, shipped_sets
from llava_mixes.decontam.decontaminate import (
    CONTAMINATED_SPLIT,
    DECONTAM_FEATURES,
    MATCHED_REFERENCE,
    BenchmarkStats,
    Contamination,
    decontaminate,
    find_contamination,
    format_benchmark_table,
    split_contaminated,
)
from llava_mixes.decontam.named_benchmarks import BenchmarksMissingError
from llava_mixes.decontam.references import load_references, references_fingerprint
from llava_mixes.decontam.search import range_search

__all__ = [
    "CONTAMINATED_SPLIT",
    "DECONTAM_FEATURES",
    "MATCHED_REFERENCE",
    "MIRROR_ENV",
    "BenchmarkEntry",
    "BenchmarkSet",
    "BenchmarkStats",
    "BenchmarksMissingError",
    "Contamination",
    "decontaminate",
    "find_contamination",
    "format_benchmark_table",
    "load_references",
    "range_search",
    "references_fingerprint",
    "shipped_sets",
    "split_contaminated",
]
