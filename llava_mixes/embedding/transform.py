"""The `add_embeddings` transform: fill the embedding cache, then attach vectors with a `Dataset.map`.

Every distinct image content (SHA-256 of its bytes) is embedded at most once per embedder identity,
ever: the vectors live in the `EmbeddingCache`, filled by one of the `engines`. A second call, for
another threshold, config or source, embeds nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from llava_mixes import schema
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.cache import EmbeddingCache, EmbeddingError, ImageRef, open_store, vector_array
from llava_mixes.embedding.embedders import DEFAULT_EMBEDDER, Embedder, resolve_embedder
from llava_mixes.embedding.engines import run_engine
from llava_mixes.store import ShardStore, default_cache_root

logger = logging.getLogger(__name__)


def distinct_images(dataset: datasets.Dataset) -> list[ImageRef]:
    """Each distinct image content of `dataset`, at its first appearance, with where to read it."""
    columns = dataset.select_columns([schema.IMAGE, schema.IMAGE_SHA256])
    columns = columns.cast_column(schema.IMAGE, datasets.Image(decode=False))
    seen: dict[str, ImageRef] = {}
    row = 0
    for table in columns.with_format("arrow").iter(batch_size=8192):
        images = table.column(schema.IMAGE).to_pylist()
        hashes = table.column(schema.IMAGE_SHA256).to_pylist()
        for image, sha in zip(images, hashes, strict=True):
            if image is not None:
                if sha is None:
                    data = image["bytes"] if image.get("bytes") else Path(image["path"]).read_bytes()
                    sha = hashlib.sha256(data).hexdigest()
                if sha not in seen:
                    seen[sha] = ImageRef(sha, image.get("path"), row)
            row += 1
    return list(seen.values())


_OPEN_CACHES: dict[str, ShardStore] = {}


def _attach_vectors(hashes: list[str | None], directory: str, dim: int) -> dict[str, list[np.ndarray | None]]:
    """`Dataset.map` function: the cached vector of each row's image, None for rows without one."""
    store = _OPEN_CACHES.get(directory)
    if store is None:
        store = _OPEN_CACHES[directory] = open_store(Path(directory), dim)
    present = [sha for sha in hashes if sha is not None]
    if any(sha not in store for sha in present):
        store.refresh()
    vectors: list[np.ndarray | None] = [None] * len(hashes)
    if present:
        table = store.take(present)
        found = iter(zip(vector_array(table, dim).astype(np.float32), table.column("error").to_pylist(), strict=True))
        for position, sha in enumerate(hashes):
            if sha is not None:
                vector, error = next(found)
                vectors[position] = vector if error is None else None
    return {schema.EMBEDDING: vectors}


@dataclass(frozen=True)
class EmbedStats:
    """What one embedding pass did; `failed` maps each image that has no usable vector to the reason."""

    embedder: str
    images: int
    embedded: int
    cached: int
    failed: dict[str, str] = field(default_factory=dict)


def fill_cache(
    dataset: datasets.Dataset,
    model: Embedder,
    cache_root: Path,
    batch_size: int = 64,
    num_workers: int | None = None,
    devices: list[str] | None = None,
    engine: str = "local",
    keep_failures: bool = False,
) -> tuple[EmbeddingCache, EmbedStats]:
    """Embed every distinct image of `dataset` that the cache lacks. An image that cannot be embedded (its
    decoder or the embedder failed, or the vector is not finite or all zero) raises `EmbeddingError`, or with
    `keep_failures=True` is listed in the stats' `failed` (by SHA-256) for the caller to reject its rows."""
    missing_columns = [column for column in (schema.IMAGE, schema.IMAGE_SHA256) if column not in dataset.column_names]
    if missing_columns:
        raise ValueError(f"add_embeddings needs the columns {missing_columns}; the dataset has {dataset.column_names}")
    cache = EmbeddingCache(cache_root, model)
    refs = distinct_images(dataset)
    missing = set(cache.store.missing(ref.sha256 for ref in refs))
    todo = [ref for ref in refs if ref.sha256 in missing]
    logger.info("%d distinct images: %d cached, %d to embed", len(refs), len(refs) - len(todo), len(todo))
    embedded, changed = 0, []
    if todo:
        readable = dataset.cast_column(schema.IMAGE, datasets.Image(decode=False))
        workers = num_workers or os.cpu_count() or 1
        embedded, changed = run_engine(engine, cache, todo, readable, batch_size, workers, devices or ["cpu"])
    if changed:
        listed = "; ".join(f"{ref.path}: {why}" for ref, why in changed[:5])
        raise EmbeddingError(
            f"{len(changed)} images differ from the dataset's image_sha256 (first: {listed}); "
            "rebuild the dataset with download_mode='force_redownload'"
        )
    errors = cache.errors([ref.sha256 for ref in refs])
    failed = [(ref, error) for ref, error in zip(refs, errors, strict=True) if error is not None]
    if failed and not keep_failures:
        listed = "; ".join(f"{ref.path}: {error}" for ref, error in failed[:5])
        raise EmbeddingError(f"{len(failed)} images could not be embedded (first: {listed})")
    reasons = {ref.sha256: error for ref, error in failed}
    return cache, EmbedStats(model.key(), len(refs), embedded, len(refs) - len(todo), reasons)


def attach_embeddings(
    dataset: datasets.Dataset, cache: EmbeddingCache, num_proc: int | None = None
) -> datasets.Dataset:
    """`Dataset.map` that adds the cached vectors as the `embedding` column; cached by fingerprint."""
    return dataset.map(
        _attach_vectors,
        batched=True,
        batch_size=1000,
        input_columns=[schema.IMAGE_SHA256],
        fn_kwargs={"directory": str(cache.directory), "dim": cache.dim},
        features=datasets.Features({**dataset.features, schema.EMBEDDING: schema.embedding_feature(cache.dim)}),
        new_fingerprint=Hasher.hash((dataset._fingerprint, "add_embeddings", cache.embedder.key())),
        num_proc=num_proc,
        desc="Attaching embeddings",
    )


def add_embeddings(
    dataset: datasets.Dataset,
    embedder: str | Embedder = DEFAULT_EMBEDDER,
    *,
    revision: str | None = None,
    device: str | None = None,
    precision: str = "auto",
    batch_size: int = 64,
    num_workers: int | None = None,
    cache_dir: str | Path | None = None,
    num_proc: int | None = None,
    engine: str = "local",
) -> datasets.Dataset:
    """`dataset` with an `embedding` column (float32, unit length; null for rows without an image).

    Every distinct image is embedded once per embedder, ever: vectors are cached by the image bytes'
    SHA-256 under `cache_dir` (default `$LLAVA_MIXES_CACHE` or `~/.cache/llava_mixes`). `device` may list
    several devices (`"cuda:0,cuda:1"`; `"cuda"` is every GPU): one process embeds on each.
    """
    devices = parse_devices(device)
    model = resolve_embedder(embedder, revision=revision, device=devices[0], precision=precision)
    root = Path(cache_dir) if cache_dir else default_cache_root()
    cache, _ = fill_cache(dataset, model, root, batch_size, num_workers, devices, engine)
    return attach_embeddings(dataset, cache, num_proc)
