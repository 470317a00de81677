"""`deduplicate`: near-duplicate image removal as a row filter, with the keep rule made explicit. The kept and
removed rows are picked with `Dataset.select` (an indices mapping, what `Dataset.filter` builds too, without
its pass over the rows).

Rule: within a scope (an `image_group`, or all images for `scope="global"`), distinct images are
visited in order of first appearance; an image is removed when its cosine similarity to an image
already kept in its scope is >= the threshold. Byte-identical files (same SHA-256) under different paths
are duplicates at every threshold: the first path is the one judged, the others follow it. Rows without
an image are always kept. The result depends only on the input rows and the threshold. An image row
without a usable vector (none, or one with a NaN or infinite coordinate, or all zero) is an error here;
the builder rejects such rows first (`building.losses.reject_unembeddable`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.fingerprint import Hasher

from llava_mixes import schema
from llava_mixes.dedup.search import greedy_keep_first
from llava_mixes.devices import cuda_available
from llava_mixes.errors import BadEmbeddingError, ConfigError, unknown_choice
from llava_mixes.progress import quiet
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
_BATCH = 8192
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


@dataclass(frozen=True)
class Decisions:
    """What happened to every image path and which path each row shows (indices into `paths`)."""

    paths: pa.Array
    """The distinct image paths, in order of first appearance."""
    row_path: np.ndarray
    """Per row: the index of its path, -1 for a row without an image."""
    kept: np.ndarray
    """Per path: whether it is kept."""
    duplicate_of: np.ndarray
    """Per path: the index of the kept path it duplicates, -1 where kept."""
    similarity: np.ndarray
    """Per path: the float32 cosine to that path (1.0 for a byte-identical file), NaN where kept."""


def _check_arguments(dataset: datasets.Dataset, threshold: float, scope: str, search: str, from_cache: bool) -> None:
    check_threshold(threshold, f"threshold={threshold!r}")
    if scope not in SCOPES:
        raise unknown_choice("scope", scope, SCOPES)
    if search not in SEARCHES:
        raise unknown_choice("search", search, SEARCHES)
    needed = [schema.IMAGE_PATH, schema.IMAGE_SHA256, schema.IMAGE_GROUP, *([] if from_cache else [schema.EMBEDDING])]
    absent = [column for column in needed if column not in dataset.column_names]
    if absent:
        raise ValueError(f"deduplicate needs the columns {absent} (run add_embeddings first)")


def _codes(values: pa.Array | pa.ChunkedArray, nulls: str = "mask") -> tuple[np.ndarray, pa.Array]:
    """Each value's index into the distinct values, numbered in order of first appearance (-1 for null under
    `nulls="mask"`; under `"encode"` null is one more value), and those distinct values."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    encoded = pc.dictionary_encode(values, null_encoding=nulls)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return codes, encoded.dictionary


def _first_rows(codes: np.ndarray) -> np.ndarray:
    """The first position of each code `0, 1, ...` in `codes` (-1s aside)."""
    present = np.flatnonzero(codes >= 0)
    _, first = np.unique(codes[present], return_index=True)
    return present[first]


def _valid_rows(dataset: datasets.Dataset) -> np.ndarray:
    """Per row, whether its `embedding` is not null."""
    parts = [np.zeros(0, dtype=bool)]
    for table in dataset.select_columns([schema.EMBEDDING]).with_format("arrow").iter(batch_size=_BATCH):
        parts.append(table.column(schema.EMBEDDING).is_valid().to_numpy(zero_copy_only=False))
    return np.concatenate(parts)


def _column_vectors(dataset: datasets.Dataset, rows: np.ndarray) -> np.ndarray:
    """The `embedding` of each of `rows` (ascending row numbers), float32."""
    vectors = [np.zeros((0, 1), np.float32)]
    start = 0
    for table in dataset.select_columns([schema.EMBEDDING]).with_format("arrow").iter(batch_size=_BATCH):
        end = start + table.num_rows
        local = rows[np.searchsorted(rows, start) : np.searchsorted(rows, end)] - start
        if local.size:
            column = table.column(schema.EMBEDDING).combine_chunks()
            taken = column.take(pa.array(local)).flatten().to_numpy(zero_copy_only=False)
            vectors.append(taken.reshape(local.size, -1).astype(np.float32, copy=False))
        start = end
    return np.concatenate(vectors[1:]) if len(vectors) > 1 else vectors[0]


def _cached_vectors(cache: VectorSource, hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The cached vectors of `hashes` (float16 as stored, else float32), and which hashes lack one (when any
    does, the vectors are those of the others)."""
    absent = set(cache.missing(hashes))
    present = np.array([sha not in absent for sha in hashes], dtype=bool)
    stored, errors = cache.vectors([sha for sha in hashes if sha not in absent])
    lacking = ~present
    lacking[present] = np.array([error is not None for error in errors], dtype=bool)
    return (stored if stored.dtype == np.float16 else stored.astype(np.float32)), lacking


def search_device(device: str | None) -> str | None:
    """Where the search scores: `auto` picks the GPU when CUDA is there, else NumPy on the host (None)."""
    if device != "auto":
        return device
    return "cuda" if cuda_available() else None


def _missing_rows(row_path: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The image rows without a vector whose path no earlier row with a vector showed."""
    paths = int(row_path.max(initial=-1)) + 1
    with_vector = np.flatnonzero((row_path >= 0) & valid)
    first_valid = np.full(paths, len(row_path), dtype=np.int64)
    codes, first = np.unique(row_path[with_vector], return_index=True)
    first_valid[codes] = with_vector[first]
    rows = np.flatnonzero((row_path >= 0) & ~valid)
    return rows[first_valid[row_path[rows]] > rows]


def _contents(
    table: pa.Table, first_rows: np.ndarray, scope: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """Distinct contents (one per scope and SHA-256) in order of first appearance: each path's content, each
    content's first path and scope, and the scopes' names."""
    at = pa.array(first_rows, type=pa.int64())
    if scope == "global":
        scopes, names = np.zeros(len(first_rows), dtype=np.int64), pa.array([GLOBAL_SCOPE])
    else:
        groups = table.column(schema.IMAGE_GROUP).take(at).cast(pa.string())
        scopes, names = _codes(pc.fill_null(groups, "None"))
    hashes, distinct = _codes(table.column(schema.IMAGE_SHA256).take(at), nulls="encode")
    _, first_path, path_key = np.unique(scopes * max(len(distinct), 1) + hashes, True, True)
    order = np.argsort(first_path)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    content_first_path = first_path[order]
    return rank[path_key.reshape(-1)], content_first_path, scopes[content_first_path], names


def _scope_vectors(
    dataset: datasets.Dataset,
    table: pa.Table,
    content_rows: np.ndarray,
    order: np.ndarray,
    embeddings: VectorSource | None,
) -> np.ndarray:
    """The vector of each content (its first row is in `content_rows`) in the order `order` gives them; raises
    `BadEmbeddingError` naming, in order of first appearance, the contents without a usable one."""
    ids = table.column(schema.ID).take(pa.array(content_rows, type=pa.int64()))
    if embeddings is None:
        vectors = _column_vectors(dataset, content_rows)[order]
    else:
        hashes = table.column(schema.IMAGE_SHA256).take(pa.array(content_rows[order], type=pa.int64()))
        vectors, lacking = _cached_vectors(embeddings, hashes.to_pylist())
        if lacking.any():
            at = np.sort(order[lacking])
            raise BadEmbeddingError(
                f"{at.size} image rows have no embedding (first ids: {ids.take(pa.array(at[:5])).to_pylist()}); "
                "drop them before deduplicate"
            )
    # Float16 vectors are checked from their bits (fast), before they become float32 (exactly), scope by scope.
    bad = np.sort(order[unusable_vectors(vectors)])
    if bad.size:
        raise BadEmbeddingError(
            f"{bad.size} image rows have an embedding with a NaN or infinite coordinate, or all zero (first ids: "
            f"{ids.take(pa.array(bad[:5])).to_pylist()}); embed those images again or drop their rows before "
            "deduplicate",
            bad.tolist(),
        )
    return vectors


def decide(
    dataset: datasets.Dataset,
    threshold: float,
    scope: str,
    block_size: int = 1024,
    device: str | None = "auto",
    search: str = "exact",
    embeddings: VectorSource | None = None,
) -> Decisions:
    """Apply the rule (module docstring) and return the decision for every image path; vectors come from the
    `embedding` column, or from `embeddings` (by `image_sha256`) when given."""
    columns = [schema.ID, schema.IMAGE_PATH, schema.IMAGE_SHA256, schema.IMAGE_GROUP]
    table = dataset.select_columns(columns).with_format("arrow")[:]
    row_path, paths = _codes(table.column(schema.IMAGE_PATH))
    if embeddings is None:
        missing = _missing_rows(row_path, _valid_rows(dataset))
        if missing.size:
            ids = table.column(schema.ID).take(pa.array(missing[:5])).to_pylist()
            raise BadEmbeddingError(
                f"{missing.size} image rows have no embedding (first ids: {ids}); drop them before deduplicate"
            )
    first_rows = _first_rows(row_path)
    path_content, content_first_path, content_scope, scope_names = _contents(table, first_rows, scope)
    # Contents grouped by scope, each scope in order of first appearance: a scope's vectors are one slice.
    order = np.argsort(content_scope, kind="stable")
    vectors = _scope_vectors(dataset, table, first_rows[content_first_path], order, embeddings)
    content_kept = np.ones(len(content_first_path), dtype=bool)
    content_duplicate_of = np.full(len(content_first_path), -1, dtype=np.int64)
    content_similarity = np.full(len(content_first_path), np.nan, dtype=np.float32)
    bounds = [0, *(np.flatnonzero(np.diff(content_scope[order])) + 1).tolist(), len(order)]
    for begin, end in pairwise(bounds) if order.size else []:
        ids, members = order[begin:end], vectors[begin:end].astype(np.float32, copy=False)
        if search == "ivf":
            from llava_mixes.dedup.ann import approximate_keep_first

            result = approximate_keep_first(members, threshold)
        else:
            result = greedy_keep_first(members, threshold, block_size=block_size, device=search_device(device))
        content_kept[ids] = result.kept
        removed = ~result.kept
        content_duplicate_of[ids[removed]] = ids[result.duplicate_of[removed]]
        content_similarity[ids] = result.similarity
        name = scope_names[int(content_scope[ids[0]])].as_py()
        logger.info("%s: %d of %d distinct images kept", name, int(result.kept.sum()), len(ids))
    first_path = content_first_path[path_content]
    follower = first_path != np.arange(len(path_content))
    near = ~content_kept[path_content]
    kept = ~near & ~follower
    duplicate_of = np.where(near, content_first_path[content_duplicate_of[path_content]], first_path)
    similarity = np.where(near, content_similarity[path_content], np.float32(1.0)).astype(np.float32)
    return Decisions(
        paths, row_path, kept, np.where(kept, -1, duplicate_of), np.where(kept, np.float32(np.nan), similarity)
    )


def deduplicate(
    dataset: datasets.Dataset,
    threshold: float = 0.8,
    scope: str = "group",
    *,
    block_size: int = 1024,
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
    has_image = decisions.row_path >= 0
    removed = np.zeros(len(dataset), dtype=bool)
    removed[has_image] = ~decisions.kept[decisions.row_path[has_image]]
    target = np.full(len(dataset), -1, dtype=np.int64)
    target[removed] = decisions.duplicate_of[decisions.row_path[removed]]
    cosine = np.zeros(len(dataset), dtype=np.float32)
    cosine[removed] = decisions.similarity[decisions.row_path[removed]]
    # The new columns as Arrow arrays, null on kept rows.
    duplicate_of = decisions.paths.cast(pa.string()).take(pa.array(target, mask=~removed))
    similarity = pa.array(cosine, mask=~removed)
    source = embeddings.key() if embeddings is not None else schema.EMBEDDING
    run = Hasher.hash((dataset._fingerprint, "deduplicate", float(threshold), scope, search, source))
    with quiet(len(dataset)):
        annotated = dataset.add_column(
            schema.DUPLICATE_OF,
            duplicate_of,
            feature=schema.DEDUP_FEATURES[schema.DUPLICATE_OF],
            new_fingerprint=run + "a",
        ).add_column(
            schema.SIMILARITY, similarity, feature=schema.DEDUP_FEATURES[schema.SIMILARITY], new_fingerprint=run + "b"
        )
    splits = {
        split: annotated.select(np.flatnonzero(removed != want), new_fingerprint=f"{run}-{split}")
        for split, want in ((schema.TRAIN_SPLIT, True), (schema.REMOVED_SPLIT, False))
    }
    return datasets.DatasetDict(splits)
