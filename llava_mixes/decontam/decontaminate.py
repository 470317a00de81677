"""Decontamination: the training rows whose picture is a copy of an evaluation benchmark's picture.

Reference pictures and training pictures go through the same content-keyed embedding cache (each distinct
picture embedded once per embedder, ever). Every distinct training picture is searched against every reference
picture with the exact blocked `range_search`; a pair counts at float64 cosine >= the threshold, and a
training picture byte-identical to a reference picture always counts (similarity 1.0), vector or not. A row is
contaminated when its picture matches any reference; `matched_reference` names the closest one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from llava_mixes import schema
from llava_mixes.decontam.candidates import CandidateBudget, CandidateTally, candidate_pairs
from llava_mixes.decontam.copies import confirm, picture_groups, picture_source, verification_record, verifies
from llava_mixes.decontam.references import Reference, load_references, reference_dataset
from llava_mixes.decontam.search import range_search
from llava_mixes.decontam.tables import benchmark_table
from llava_mixes.dedup.deduplicate import check_threshold
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.embedders import Embedder, resolve_embedder
from llava_mixes.embedding.transform import fill_cache
from llava_mixes.embedding.verify import CopyVerifier
from llava_mixes.errors import ConfigError
from llava_mixes.progress import quiet
from llava_mixes.store import default_cache_root

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "gradients"
"""Decontamination looks for copies, so it defaults to a copy embedder (weight-free, crop-tolerant)."""
FALLBACK_THRESHOLD = 0.9
"""The threshold for an embedder that states no copy threshold of its own (`copy_threshold`)."""
RAISE_THRESHOLD = "decontaminate_threshold= in build(), --decontaminate-threshold, or threshold= in decontaminate()"
"""Where a user sets a higher candidate threshold for decontamination (named by `TooManyCandidatesError`)."""
PICTURE_STORE = "benchmark-pictures"
"""The folder of the content cache root where named benchmarks' pictures are kept, one file per content."""
CONTAMINATED_SPLIT = "contaminated"
MATCHED_REFERENCE = "matched_reference"
DECONTAM_FEATURES = {
    MATCHED_REFERENCE: datasets.Value("string"),
    schema.SIMILARITY: datasets.Value("float32"),
}


@dataclass
class BenchmarkStats:
    """One line of the per-benchmark table: its pictures, those some training picture matches, the training
    rows removed because their closest reference is one of this benchmark's, and what could not be compared."""

    benchmark: str
    reference_images: int = 0
    images_hit: int = 0
    rows_removed: int = 0
    not_found: int = 0
    not_embedded: int = 0


@dataclass
class Contamination:
    """What `find_contamination` found: the threshold and embedder, per-benchmark statistics, and per
    contaminated row (by index in the dataset searched) its closest reference and that cosine."""

    threshold: float
    embedder: dict[str, Any]
    benchmarks: list[BenchmarkStats] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    matched_reference: list[str] = field(default_factory=list)
    similarity: list[float] = field(default_factory=list)
    verification: dict[str, Any] | None = None
    """The verification stage (`decontam.copies`): the verifier, the candidate threshold and what it did; None
    where the embedder's cosine decides alone."""
    groups: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per image group: its rows and those found contaminated (for the build report's removal alarm)."""
    named_benchmarks: list[dict[str, Any]] = field(default_factory=list)
    """Per entry of a named benchmark set: the repo, config, splits and columns, where it was read from, the
    revision, its files and pictures and their SHA-256 (`decontam.named_benchmarks`)."""

    def to_json(self) -> dict[str, Any]:
        """The settings and the per-benchmark table (not the per-row matches, which the split holds)."""
        return {
            "threshold": self.threshold,
            "embedder": self.embedder,
            "benchmarks": [asdict(stats) for stats in self.benchmarks],
            "rows_removed": len(self.rows),
            "verification": self.verification,
            "groups": self.groups,
            **({"named_benchmarks": self.named_benchmarks} if self.named_benchmarks else {}),
        }


def check_settings(references: object, threshold: object, embedder: object) -> tuple[tuple[str, ...], float | None]:
    """A config's decontamination settings, checked: the references as a tuple of names (one name is a list of
    one) and the threshold as a float (None: the embedder's copy threshold); `ConfigError` names a bad value."""
    names = (references,) if isinstance(references, str) else tuple(references)
    for reference in names:
        if not isinstance(reference, str) or not reference:
            raise ConfigError(
                f"decontaminate={list(names)!r} is not allowed; give a list of folder, file, Hub dataset or benchmark "
                "set names (an in-memory dataset goes to llava_mixes.decontaminate instead)"
            )
    if threshold is not None:
        threshold = check_threshold(threshold, f"decontaminate_threshold={threshold!r}")
    if not isinstance(embedder, str) or not embedder:
        raise ConfigError(
            f"decontaminate_embedder={embedder!r} is not allowed; give 'gradients', 'thumbnail', a TorchScript file "
            "(.pt) or an HF model id"
        )
    return names, threshold


def default_threshold(model: Embedder) -> float:
    """The embedder's own threshold: its candidate threshold where verification confirms its pairs
    (`decontam.copies.verifies`), else its copy threshold, else `FALLBACK_THRESHOLD`."""
    if verifies(model):
        return float(model.candidate_threshold)  # type: ignore[attr-defined]
    return float(getattr(model, "copy_threshold", FALLBACK_THRESHOLD))


@dataclass(frozen=True)
class CopySearch:
    """What a copy search (decontamination, overlap) runs with: the embedder, its devices, the threshold and
    the cache root."""

    model: Embedder
    devices: list[str]
    threshold: float
    cache_root: Path
    verifier: CopyVerifier | None = None
    """Confirms the embedder's candidate pairs (None: its cosine decides alone; see `decontam.copies`)."""


def copy_search(
    embedder: str | Embedder, threshold: float | None, device: str | None, cache_dir: str | Path | None
) -> CopySearch:
    """The settings of a copy search: `threshold=None` is the embedder's copy threshold (`default_threshold`);
    `cache_dir=None` the default cache root."""
    devices = parse_devices(device)
    model = resolve_embedder(embedder, device=devices[0])
    checked = check_threshold(default_threshold(model) if threshold is None else threshold, f"threshold={threshold!r}")
    root = Path(cache_dir) if cache_dir else default_cache_root()
    return CopySearch(model, devices, checked, root, CopyVerifier() if verifies(model) else None)


def _row_hashes(dataset: datasets.Dataset) -> list[str | None]:
    hashes: list[str | None] = []
    for table in dataset.select_columns([schema.IMAGE_SHA256]).with_format("arrow").iter(batch_size=65536):
        hashes.extend(table.column(schema.IMAGE_SHA256).to_pylist())
    return hashes


def find_contamination(
    dataset: datasets.Dataset,
    references: Sequence[Reference],
    threshold: float | None = None,
    embedder: str | Embedder = DEFAULT_EMBEDDER,
    *,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    block_size: int = 1024,
    tile_size: int = 16384,
    max_candidate_pairs: int | None = None,
    mirror: str | Path | None = None,
) -> Contamination:
    """The rows of `dataset` (with `image` and `image_sha256` columns) whose picture copies a reference picture
    (see the module docstring); `threshold=None` is the embedder's copy threshold (`default_threshold`). Where
    verification confirms the candidates, more than `max_candidate_pairs` of them (None: `CandidateBudget.of`)
    stop the run with `TooManyCandidatesError` before any is verified. A named benchmark set is read from
    `mirror` (None: `$LLAVA_MIXES_BENCHMARK_MIRROR`) or the Hub cache."""
    search = copy_search(embedder, threshold, device, cache_dir)
    budget = CandidateBudget.of(max_candidate_pairs)
    model, devices, threshold, root = search.model, search.devices, search.threshold, search.cache_root
    found = load_references(references, mirror, root / PICTURE_STORE)
    stats = {name: BenchmarkStats(name) for name in found.benchmarks}
    for name, missing in found.missing.items():
        stats[name].not_found = len(missing)
    for image in found.images:
        stats[image.benchmark].reference_images += 1
    result = Contamination(threshold, model.identity(), list(stats.values()), named_benchmarks=found.named)

    cache, ref_stats = fill_cache(
        reference_dataset(found.images), model, root, batch_size, num_workers, devices, keep_failures=True
    )
    for image in found.images:
        if image.sha256 in ref_stats.failed:
            stats[image.benchmark].not_embedded += 1
    cache, train_stats = fill_cache(dataset, model, root, batch_size, num_workers, devices, keep_failures=True)
    if train_stats.failed:
        logger.warning(
            "%d training pictures have no vector: only a byte-identical reference can match them",
            len(train_stats.failed),
        )

    hashes = _row_hashes(dataset)
    train_keys = sorted({sha for sha in hashes if sha is not None and sha not in train_stats.failed})
    ref_keys = sorted({image.sha256 for image in found.images if image.sha256 not in ref_stats.failed})
    best: dict[str, tuple[float, str]] = {}
    hit_refs: set[str] = set()
    if train_keys and ref_keys:
        train_vectors, _ = cache.vectors(train_keys)
        ref_vectors, _ = cache.vectors(ref_keys)
        if search.verifier is None:
            matches = range_search(train_vectors, ref_vectors, threshold, block_size, tile_size)
        else:
            groups = picture_groups(dataset)
            benchmark_of = {image.sha256: image.benchmark for image in found.images}
            tally = CandidateTally()
            matches = candidate_pairs(
                train_vectors,
                ref_vectors,
                threshold,
                [groups.get(sha, "(no image group)") for sha in train_keys],
                [benchmark_of[sha] for sha in ref_keys],
                budget,
                tally,
                block_size=block_size,
                tile_size=tile_size,
            )
            budget.check(
                tally, f"cosine >= {threshold} with {model.identity().get('kind', embedder)}", RAISE_THRESHOLD
            )
            source = picture_source(dataset, reference_dataset(found.images))
            matches, verified = confirm(matches, train_keys, ref_keys, search.verifier, source, num_workers)
            result.verification = verification_record(search.verifier, threshold, verified)
        closest, similarity = matches.best(len(train_keys))
        for position in np.flatnonzero(closest >= 0).tolist():
            best[train_keys[position]] = (float(similarity[position]), ref_keys[closest[position]])
        hit_refs.update(ref_keys[index] for index in np.unique(matches.reference).tolist())
    ref_shas = {image.sha256 for image in found.images}
    for sha in set(hashes) & ref_shas:
        best[sha] = (1.0, sha)
        hit_refs.add(sha)

    first_image = {}
    for image in found.images:
        first_image.setdefault(image.sha256, image)
    for image in found.images:
        if image.sha256 in hit_refs:
            stats[image.benchmark].images_hit += 1
    for row, sha in enumerate(hashes):
        if sha in best:
            score, ref_sha = best[sha]
            reference = first_image[ref_sha]
            result.rows.append(row)
            result.matched_reference.append(reference.label)
            result.similarity.append(score)
            stats[reference.benchmark].rows_removed += 1
    result.groups = _group_counts(dataset, result.rows)
    logger.info("%d of %d rows match a benchmark picture at cosine >= %s", len(result.rows), len(hashes), threshold)
    return result


def _group_counts(dataset: datasets.Dataset, contaminated: list[int]) -> dict[str, dict[str, int]]:
    """Per image group (None as "(no image group)"): its rows and how many of them are in `contaminated`."""
    if schema.IMAGE_GROUP not in dataset.column_names:
        return {}
    groups = dataset.select_columns([schema.IMAGE_GROUP]).with_format("arrow")[:].column(0).to_pylist()
    counts: dict[str, dict[str, int]] = {}
    for group in groups:
        counts.setdefault(group or "(no image group)", {"rows": 0, "contaminated": 0})["rows"] += 1
    for row in contaminated:
        counts[groups[row] or "(no image group)"]["contaminated"] += 1
    return counts


def split_contaminated(dataset: datasets.Dataset, contamination: Contamination) -> datasets.DatasetDict:
    """`train`: the rows `contamination` does not list; `contaminated`: those it lists, with `matched_reference`
    and `similarity` (a `similarity` column already there is replaced)."""
    hit = np.zeros(len(dataset), dtype=bool)
    hit[contamination.rows] = True
    clean = dataset.select(np.flatnonzero(~hit))
    dirty = schema.select_rows(dataset, contamination.rows)
    features = datasets.Features({**dataset.features, **DECONTAM_FEATURES})
    dirty = dirty.remove_columns([name for name in DECONTAM_FEATURES if name in dirty.column_names])
    with quiet(len(dirty)):
        dirty = dirty.add_column(MATCHED_REFERENCE, contamination.matched_reference)
        dirty = dirty.add_column(schema.SIMILARITY, np.asarray(contamination.similarity, dtype=np.float32).tolist())
        dirty = dirty.cast(features)
    return datasets.DatasetDict({schema.TRAIN_SPLIT: clean, CONTAMINATED_SPLIT: dirty})


def decontaminate(
    ds: datasets.Dataset,
    references: Sequence[Reference],
    threshold: float | None = None,
    embedder: str | Embedder = DEFAULT_EMBEDDER,
    **kwargs: Any,
) -> datasets.DatasetDict:
    """`DatasetDict(train=clean rows, contaminated=rows whose picture copies a reference picture)`.

    `references`: image folders, question files, TSVs, LLaVA eval folders, datasets or Hub ids (see
    `decontam.references`). `threshold=None`: the embedder's own (for `gradients`, candidates at 0.70 that
    verification then confirms; 0.9 for an embedder that states none). `kwargs` go to `find_contamination`
    (`cache_dir`, `device`, `batch_size`, ...)."""
    return split_contaminated(ds, find_contamination(ds, references, threshold, embedder, **kwargs))


def format_benchmark_table(contamination: Contamination | Mapping[str, Any]) -> str:
    """The per-benchmark table (Markdown) of a `Contamination` or of its `to_json()`."""
    return benchmark_table(contamination.to_json() if isinstance(contamination, Contamination) else contamination)
