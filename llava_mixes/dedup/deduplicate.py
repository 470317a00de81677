"""`deduplicate`: near-duplicate image removal as a `Dataset.filter`, with the keep rule made explicit.

Rule: within a scope (an `image_group`, or all images for `scope="global"`), distinct images are
visited in order of first appearance; an image is removed when its cosine similarity to an image
already kept in its scope is >= the threshold. Byte-identical files (same SHA-256) under different paths
are duplicates at every threshold: the first path is the one judged, the others follow it. Rows without
an image are always kept. The result depends only on the input rows and the threshold. An image row
without a usable vector (none, or one with a NaN or infinite coordinate, or all zero) is an error here;
the builder rejects such rows first (`build_report.reject_unembeddable`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import datasets
import numpy as np
import pyarrow as pa
from datasets.fingerprint import Hasher

from llava_mixes import schema
from llava_mixes.dedup.search import greedy_keep_first
from llava_mixes.devices import cuda_available
from llava_mixes.errors import BadEmbeddingError, ConfigError
from llava_mixes.vectors import unusable_vectors

logger = logging.getLogger(__name__)

GLOBAL_SCOPE = "(global)"
SCOPES = ("group", "global")
SEARCHES = ("exact", "ivf")
KEEP_RULE = (
    "distinct images of a scope are visited in order of first appearance; an image is removed when its cosine "
    "similarity to an image already kept in its scope is >= the threshold; byte-identical files are duplicates "
    "at every threshold"
)
THRESHOLDS = (0.7, 0.8, 0.9)
"""The seed study's thresholds: the named configs' and the ones reports label pairs at."""


def check_threshold(value: object, what: str) -> float:
    """`value` as a float when it is a number in (0, 1]; else `ConfigError` naming `what` (e.g. `threshold=2`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ConfigError(f"{what} is not allowed; it must be a number in (0, 1]")
    return float(value)


class VectorSource(Protocol):
    """Where `deduplicate` reads vectors by image content hash when a dataset carries none (the embedding cache
    is one): the hashes it lacks, the vectors and per-hash errors of the others, and an identity for caching."""

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The keys it holds nothing for, each once."""
        ...

    def vectors(self, keys: list[str]) -> tuple[np.ndarray, list[str | None]]:
        """`(len(keys), dim)` vectors and, per key, an error (None where the vector is usable)."""
        ...

    def key(self) -> str:
        """A string that changes whenever the vectors could."""
        ...


@dataclass
class _Scope:
    """The distinct contents of one scope, in order of first appearance."""

    content_ids: list[int] = field(default_factory=list)


@dataclass
class PathDecision:
    """What happened to one image path."""

    kept: bool
    duplicate_of: str | None = None
    similarity: float | None = None


def _check_arguments(dataset: datasets.Dataset, threshold: float, scope: str, search: str, from_cache: bool) -> None:
    check_threshold(threshold, f"threshold={threshold!r}")
    if scope not in SCOPES:
        raise ConfigError(f"scope={scope!r} is not allowed; choose one of {list(SCOPES)}")
    if search not in SEARCHES:
        raise ConfigError(f"search={search!r} is not allowed; choose one of {list(SEARCHES)}")
    needed = [schema.IMAGE_PATH, schema.IMAGE_SHA256, schema.IMAGE_GROUP, *([] if from_cache else [schema.EMBEDDING])]
    absent = [column for column in needed if column not in dataset.column_names]
    if absent:
        raise ValueError(f"deduplicate needs the columns {absent} (run add_embeddings first)")


def _batches(dataset: datasets.Dataset, from_cache: bool) -> Iterator[pa.Table]:
    columns = [schema.ID, schema.IMAGE_PATH, schema.IMAGE_SHA256, schema.IMAGE_GROUP]
    columns += [] if from_cache else [schema.EMBEDDING]
    yield from dataset.select_columns(columns).with_format("arrow").iter(batch_size=8192)


def _cached_vectors(cache: VectorSource, hashes: list[str], first_ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """The cached vectors of `hashes` (float32), and the first row ids of the images without one."""
    absent = set(cache.missing(hashes))
    found = [sha for sha in hashes if sha not in absent]
    stored, errors = cache.vectors(found)
    failed = {sha for sha, error in zip(found, errors, strict=True) if error is not None}
    lacking = [row_id for sha, row_id in zip(hashes, first_ids, strict=True) if sha in absent or sha in failed]
    return stored.astype(np.float32), lacking


def search_device(device: str | None) -> str | None:
    """Where the search scores: `auto` picks the GPU when CUDA is there, else NumPy on the host (None)."""
    if device != "auto":
        return device
    return "cuda" if cuda_available() else None


def decide(
    dataset: datasets.Dataset,
    threshold: float,
    scope: str,
    block_size: int = 1024,
    device: str | None = "auto",
    search: str = "exact",
    embeddings: VectorSource | None = None,
) -> dict[str, PathDecision]:
    """Apply the rule (module docstring) and return the decision for every image path; vectors come from the
    `embedding` column, or from `embeddings` (by `image_sha256`) when given."""
    path_content: dict[str, int] = {}
    content_first_path: list[str] = []
    content_of: dict[tuple[str, str], int] = {}
    scopes: dict[str, _Scope] = {}
    vectors: list[np.ndarray] = []
    missing: list[str] = []
    content_hashes: list[str] = []
    content_ids: list[str] = []
    for table in _batches(dataset, embeddings is not None):
        paths = table.column(schema.IMAGE_PATH).to_pylist()
        hashes = table.column(schema.IMAGE_SHA256).to_pylist()
        groups = table.column(schema.IMAGE_GROUP).to_pylist()
        if embeddings is None:
            column = table.column(schema.EMBEDDING).combine_chunks()
            valid = column.is_valid().to_numpy(zero_copy_only=False)
        else:
            valid = np.ones(len(paths), dtype=bool)
        new_rows = []
        for row, (path, sha, group) in enumerate(zip(paths, hashes, groups, strict=True)):
            if path is None or path in path_content:
                continue
            if not valid[row]:
                missing.append(table.column(schema.ID)[row].as_py())
                continue
            scope_name = GLOBAL_SCOPE if scope == "global" else str(group)
            key = (scope_name, sha)
            if key not in content_of:
                content_of[key] = len(content_first_path)
                content_first_path.append(path)
                scopes.setdefault(scope_name, _Scope()).content_ids.append(content_of[key])
                new_rows.append(row)
            path_content[path] = content_of[key]
        if not new_rows:
            continue
        content_ids.extend(table.column(schema.ID).take(pa.array(new_rows)).to_pylist())
        if embeddings is None:
            taken = column.take(pa.array(new_rows)).flatten().to_numpy(zero_copy_only=False)
            vectors.append(taken.reshape(len(new_rows), -1).astype(np.float32, copy=False))
        else:
            content_hashes.extend(hashes[row] for row in new_rows)
    if embeddings is not None:
        stored, lacking = _cached_vectors(embeddings, content_hashes, content_ids)
        vectors = [stored]
        missing.extend(lacking)
    if missing:
        raise BadEmbeddingError(
            f"{len(missing)} image rows have no embedding (first ids: {missing[:5]}); drop them before deduplicate"
        )
    all_vectors = np.concatenate(vectors) if vectors else np.zeros((0, 1), np.float32)
    bad = np.flatnonzero(unusable_vectors(all_vectors))
    if bad.size:
        raise BadEmbeddingError(
            f"{bad.size} image rows have an embedding with a NaN or infinite coordinate, or all zero (first ids: "
            f"{[content_ids[at] for at in bad[:5]]}); embed those images again or drop their rows before deduplicate",
            bad.tolist(),
        )
    content_kept = np.ones(len(content_first_path), dtype=bool)
    content_duplicate_of = np.full(len(content_first_path), -1, dtype=np.int64)
    content_similarity = np.full(len(content_first_path), np.nan, dtype=np.float32)
    for scope_name, members in scopes.items():
        ids = np.asarray(members.content_ids, dtype=np.int64)
        if search == "ivf":
            from llava_mixes.dedup.ann import approximate_keep_first

            result = approximate_keep_first(all_vectors[ids], threshold)
        else:
            result = greedy_keep_first(
                all_vectors[ids], threshold, block_size=block_size, device=search_device(device)
            )
        content_kept[ids] = result.kept
        removed = ~result.kept
        content_duplicate_of[ids[removed]] = ids[result.duplicate_of[removed]]
        content_similarity[ids] = result.similarity
        logger.info("%s: %d of %d distinct images kept", scope_name, int(result.kept.sum()), len(ids))
    decisions: dict[str, PathDecision] = {}
    for path, content in path_content.items():
        if not content_kept[content]:
            target = content_first_path[content_duplicate_of[content]]
            decisions[path] = PathDecision(False, target, float(content_similarity[content]))
        elif content_first_path[content] != path:
            decisions[path] = PathDecision(False, content_first_path[content], 1.0)
        else:
            decisions[path] = PathDecision(True)
    return decisions


def _select(indices: list[int], mask: np.ndarray, want: bool) -> list[bool]:
    """`Dataset.filter` function: the rows whose keep flag equals `want`."""
    return (mask[np.asarray(indices, dtype=np.int64)] == want).tolist()


def deduplicate(
    dataset: datasets.Dataset,
    threshold: float = 0.8,
    scope: str = "group",
    *,
    block_size: int = 1024,
    num_proc: int | None = None,
    device: str | None = "auto",
    search: str = "exact",
    embeddings: VectorSource | None = None,
) -> datasets.DatasetDict:
    """Split `dataset` into `train` (kept rows) and `removed` (rows whose image was removed).

    Both splits gain `duplicate_of` (the kept image's path) and `similarity` (cosine to it), null on
    kept rows. The rule is in this module's docstring. `device` is where scores are computed (`auto`: the
    GPU when CUDA is there); it changes the speed, never the result. `search="ivf"` is approximate (see
    `llava_mixes.dedup.ann`): for scopes of millions of images, where the exact search would take hours. The
    vectors are the `embedding` column (`add_embeddings`), or, given `embeddings` (a filled cache), read
    from it by `image_sha256`, which needs no `embedding` column.
    """
    _check_arguments(dataset, threshold, scope, search, embeddings is not None)
    decisions = decide(dataset, float(threshold), scope, block_size, device, search, embeddings)
    paths = dataset.with_format("arrow").select_columns([schema.IMAGE_PATH])
    keep = np.ones(len(dataset), dtype=bool)
    duplicate_of: list[str | None] = [None] * len(dataset)
    similarity: list[float | None] = [None] * len(dataset)
    row = 0
    for table in paths.iter(batch_size=65536):
        for path in table.column(schema.IMAGE_PATH).to_pylist():
            decision = decisions.get(path) if path is not None else None
            if decision is not None and not decision.kept:
                keep[row] = False
                duplicate_of[row], similarity[row] = decision.duplicate_of, decision.similarity
            row += 1
    source = embeddings.key() if embeddings is not None else schema.EMBEDDING
    run = Hasher.hash((dataset._fingerprint, "deduplicate", float(threshold), scope, search, source))
    annotated = dataset.add_column(
        schema.DUPLICATE_OF,
        duplicate_of,
        feature=schema.DEDUP_FEATURES[schema.DUPLICATE_OF],
        new_fingerprint=run + "a",
    ).add_column(
        schema.SIMILARITY, similarity, feature=schema.DEDUP_FEATURES[schema.SIMILARITY], new_fingerprint=run + "b"
    )
    splits = {}
    for split, want in ((schema.TRAIN_SPLIT, True), (schema.REMOVED_SPLIT, False)):
        splits[split] = annotated.filter(
            _select,
            with_indices=True,
            batched=True,
            input_columns=[],
            fn_kwargs={"mask": keep, "want": want},
            num_proc=num_proc,
            new_fingerprint=f"{run}-{split}",
            desc=f"Selecting {split} rows",
        )
    return datasets.DatasetDict(splits)
