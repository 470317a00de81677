"""`deduplicate`: near-duplicate image removal as a `Dataset.filter`, with the keep rule made explicit.

Rule: within a scope (an `image_group`, or all images for `scope="global"`), distinct images are
visited in order of first appearance; an image is removed when its cosine similarity to an image
already kept in its scope is >= the threshold. Byte-identical files (same SHA-256) under different paths
are duplicates at every threshold: the first path is the one judged, the others follow it. Rows without
an image are always kept. The result depends only on the input rows and the threshold. An image row
without a usable vector (none, or one with a NaN or infinite coordinate, or all zero) is an error here;
the builder rejects such rows first (`reject_unembeddable`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import datasets
import numpy as np
import pyarrow as pa
from datasets.fingerprint import Hasher

from llava_mixes import schema
from llava_mixes.build_report import GroupStats, Rejection, group_stats
from llava_mixes.config import SCOPES, SEARCHES
from llava_mixes.dedup.search import greedy_keep_first, unusable_vectors
from llava_mixes.devices import cuda_available
from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.errors import BadEmbeddingError, BadRecordError, ConfigError

logger = logging.getLogger(__name__)

GLOBAL_SCOPE = "(global)"


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
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold={threshold!r} is not allowed; it must be a number in (0, 1]")
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


def _cached_vectors(cache: EmbeddingCache, hashes: list[str], first_ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """The cached vectors of `hashes` (float32), and the first row ids of the images without one."""
    absent = set(cache.store.missing(hashes))
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
    embeddings: EmbeddingCache | None = None,
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


def reject_unembeddable(
    dataset: datasets.Dataset, failed: Mapping[str, str], on_bad_records: str = "skip"
) -> tuple[datasets.Dataset, list[Rejection]]:
    """`dataset` without the rows whose image (by `image_sha256`) is in `failed` (no usable vector), and a
    rejection per such row (reason `embedding_failed`, the detail says why). Under `on_bad_records="error"`
    the first such row raises `BadRecordError` instead."""
    if not failed:
        return dataset, []
    rejected: list[Rejection] = []
    columns = [schema.ID, schema.SOURCE, schema.SOURCE_ID, schema.IMAGE_GROUP, schema.IMAGE_PATH, schema.IMAGE_SHA256]
    for table in dataset.select_columns(columns).with_format("arrow").iter(batch_size=65536):
        for row in table.to_pylist():
            why = failed.get(row[schema.IMAGE_SHA256]) if row[schema.IMAGE_SHA256] is not None else None
            if why is None:
                continue
            source = row[schema.SOURCE]
            rejection = Rejection(
                source,
                int(row[schema.ID][len(source) + 1 :]),
                row[schema.SOURCE_ID],
                row[schema.IMAGE_GROUP],
                row[schema.IMAGE_PATH],
                schema.EMBEDDING_FAILED,
                f"{row[schema.IMAGE_PATH]}: {why}",
            )
            if on_bad_records == "error":
                raise BadRecordError(
                    f"{source} row {rejection.row_index} (id {rejection.source_id!r}) rejected: {rejection.reason}: "
                    f"{rejection.detail}. Pass on_bad_records='skip' to reject such rows and list them in the build "
                    "report."
                )
            rejected.append(rejection)
    kept = dataset.filter(
        _has_vector,
        batched=True,
        input_columns=[schema.IMAGE_SHA256],
        fn_kwargs={"unusable": set(failed)},
        new_fingerprint=Hasher.hash((dataset._fingerprint, "reject_unembeddable", sorted(failed.items()))),
        desc="Rejecting images without a vector",
    )
    return kept, rejected


def _has_vector(hashes: list[str | None], unusable: set[str]) -> list[bool]:
    """`Dataset.filter` function: the rows without an image, or whose image is not in `unusable`."""
    return [sha is None or sha not in unusable for sha in hashes]


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
    embeddings: EmbeddingCache | None = None,
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
    source = embeddings.embedder.key() if embeddings is not None else schema.EMBEDDING
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


def group_path_pairs(dataset: datasets.Dataset) -> Iterator[tuple[str | None, str | None]]:
    """`(image_group, image_path)` of every row, in order, read in Arrow batches."""
    columns = dataset.select_columns([schema.IMAGE_GROUP, schema.IMAGE_PATH]).with_format("arrow")
    for table in columns.iter(batch_size=65536):
        yield from zip(
            table.column(schema.IMAGE_GROUP).to_pylist(), table.column(schema.IMAGE_PATH).to_pylist(), strict=True
        )


def dedup_group_stats(result: datasets.DatasetDict, rejected: list[Rejection]) -> list[GroupStats]:
    """Per-group statistics of a `deduplicate` result (see `report.group_stats`)."""
    return group_stats(
        group_path_pairs(result[schema.TRAIN_SPLIT]), group_path_pairs(result[schema.REMOVED_SPLIT]), rejected
    )
