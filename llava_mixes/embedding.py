"""Cached image embeddings and the `add_embeddings` transform.

The cache holds one vector (float16) per distinct image content (SHA-256 of the bytes) per embedder
identity, under `<cache root>/embeddings/<embedder key>/`. `add_embeddings` first embeds the images the
cache lacks, each distinct content once, in batches fed by decode threads and committed to the cache
every few thousand images (so an interrupted run resumes there), then attaches the vectors with a
`Dataset.map`. A second call, for another threshold, config or source, embeds nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from datasets.fingerprint import Hasher
from datasets.utils import tqdm as hf_tqdm

from llava_mixes import schema
from llava_mixes.config import DEFAULT_EMBEDDER, default_cache_root
from llava_mixes.embedders import Embedder, resolve_embedder
from llava_mixes.errors import LlavaMixesError
from llava_mixes.store import ShardStore

logger = logging.getLogger(__name__)

FLUSH_IMAGES = 4096


class EmbeddingError(LlavaMixesError, RuntimeError):
    """Some images could not be embedded; the message lists them."""


def store_schema(dim: int) -> pa.Schema:
    return pa.schema([("key", pa.string()), ("vector", pa.list_(pa.float16(), dim)), ("error", pa.string())])


class EmbeddingCache:
    """The vectors of one embedder, keyed by image SHA-256 (see the module docstring)."""

    def __init__(self, cache_root: Path, embedder: Embedder) -> None:
        self.embedder = embedder
        self.directory = Path(cache_root) / "embeddings" / embedder.key()
        if embedder.dim < 0:
            embedder.dim = self._dim_from_shards()
        self.dim = embedder.dim
        self.store = ShardStore(self.directory, store_schema(self.dim))
        self.store.write_meta({"identity": embedder.identity(), "dim": self.dim})

    def _dim_from_shards(self) -> int:
        meta = self.directory / "store.json"
        if not meta.exists():
            self.embedder.load()
            return self.embedder.dim
        import json

        return int(json.loads(meta.read_text())["dim"])

    def vectors(self, keys: list[str]) -> tuple[np.ndarray, list[str | None]]:
        """Vectors (float16, `(len(keys), dim)`) and per-key errors (None where the image embedded)."""
        table = self.store.take(keys)
        vectors = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return vectors.reshape(len(keys), self.dim), table.column("error").to_pylist()


@dataclass(frozen=True)
class ImageRef:
    """One distinct image to embed: its content hash and where its bytes are."""

    sha256: str
    path: str | None
    row: int


def _read_bytes(ref: ImageRef, dataset: datasets.Dataset) -> bytes:
    if ref.path and os.path.isfile(ref.path):
        with open(ref.path, "rb") as handle:
            return handle.read()
    stored = dataset[ref.row][schema.IMAGE]
    if not stored or stored.get("bytes") is None:
        raise FileNotFoundError(f"no file at {ref.path} and no image bytes in row {ref.row}")
    return stored["bytes"]


def _ordered_prefetch(
    items: list[ImageRef], work: Callable[[ImageRef], Any], pool: ThreadPoolExecutor, depth: int
) -> Iterator[tuple[ImageRef, Future]]:
    """Submit `work` for at most `depth` items ahead and yield results in input order."""
    pending: deque[tuple[ImageRef, Future]] = deque()
    upcoming = iter(items)
    for item in upcoming:
        pending.append((item, pool.submit(work, item)))
        if len(pending) >= depth:
            break
    while pending:
        item, future = pending.popleft()
        following = next(upcoming, None)
        if following is not None:
            pending.append((following, pool.submit(work, following)))
        yield item, future


def embed_missing(
    cache: EmbeddingCache,
    refs: list[ImageRef],
    dataset: datasets.Dataset,
    batch_size: int,
    num_workers: int,
) -> tuple[int, list[tuple[ImageRef, str]]]:
    """Embed `refs` into the cache; return how many were embedded and the images whose bytes changed."""
    embedder = cache.embedder
    embedder.load()
    changed: list[tuple[ImageRef, str]] = []

    def prepare(ref: ImageRef) -> np.ndarray | str:
        data = _read_bytes(ref, dataset)
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            return "changed"
        try:
            return embedder.prepare(data)
        except Exception as error:  # noqa: BLE001 - any decoder failure is this image's data, recorded
            return f"{type(error).__name__}: {error}"

    embedded = 0
    batch_refs: list[ImageRef] = []
    batch_inputs: list[np.ndarray] = []

    def flush_batch(writer: Any) -> None:
        nonlocal embedded, batch_refs, batch_inputs
        if batch_refs:
            vectors = embedder.embed(np.stack(batch_inputs)).astype(np.float16)
            writer.add_table(_vector_table(batch_refs, vectors, cache.dim))
            embedded += len(batch_refs)
        batch_refs, batch_inputs = [], []

    progress = hf_tqdm(total=len(refs), unit="img", desc=f"Embedding images ({embedder.key()})")
    with ThreadPoolExecutor(num_workers) as pool, cache.store.writer(FLUSH_IMAGES) as writer:
        for ref, future in _ordered_prefetch(refs, prepare, pool, depth=batch_size * 4):
            result = future.result()
            if isinstance(result, str):
                if result == "changed":
                    changed.append((ref, "the file's bytes changed since the dataset was built"))
                else:
                    writer.add({"key": ref.sha256, "vector": [0.0] * cache.dim, "error": result})
            else:
                batch_refs.append(ref)
                batch_inputs.append(result)
                if len(batch_refs) >= batch_size:
                    flush_batch(writer)
            progress.update(1)
        flush_batch(writer)
    progress.close()
    return embedded, changed


def _vector_table(refs: list[ImageRef], vectors: np.ndarray, dim: int) -> pa.Table:
    values = pa.array(vectors.reshape(-1), type=pa.float16())
    return pa.table(
        {
            "key": pa.array([ref.sha256 for ref in refs], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(values, dim),
            "error": pa.nulls(len(refs), pa.string()),
        }
    )


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
        store = _OPEN_CACHES[directory] = ShardStore(Path(directory), store_schema(dim))
    present = [sha for sha in hashes if sha is not None]
    if any(sha not in store for sha in present):
        store.refresh()
    vectors: list[np.ndarray | None] = [None] * len(hashes)
    if present:
        table = store.take(present)
        values = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        found = iter(zip(values.reshape(-1, dim).astype(np.float32), table.column("error").to_pylist(), strict=True))
        for position, sha in enumerate(hashes):
            if sha is not None:
                vector, error = next(found)
                vectors[position] = vector if error is None else None
    return {schema.EMBEDDING: vectors}


@dataclass(frozen=True)
class EmbedStats:
    """What one embedding pass did."""

    embedder: str
    images: int
    embedded: int
    cached: int


def fill_cache(
    dataset: datasets.Dataset,
    model: Embedder,
    cache_root: Path,
    batch_size: int = 64,
    num_workers: int | None = None,
) -> tuple[EmbeddingCache, EmbedStats]:
    """Embed every distinct image of `dataset` that the cache lacks; raise if any image cannot be embedded."""
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
        workers = num_workers or min(8, os.cpu_count() or 1)
        embedded, changed = embed_missing(cache, todo, readable, batch_size, workers)
    if changed:
        listed = "; ".join(f"{ref.path}: {why}" for ref, why in changed[:5])
        raise EmbeddingError(
            f"{len(changed)} images differ from the dataset's image_sha256 (first: {listed}); "
            "rebuild the dataset with download_mode='force_redownload'"
        )
    _, errors = cache.vectors([ref.sha256 for ref in refs]) if refs else (None, [])
    failed = [(ref, error) for ref, error in zip(refs, errors, strict=True) if error is not None]
    if failed:
        listed = "; ".join(f"{ref.path}: {error}" for ref, error in failed[:5])
        raise EmbeddingError(f"{len(failed)} images could not be embedded (first: {listed})")
    return cache, EmbedStats(model.key(), len(refs), embedded, len(refs) - len(todo))


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
) -> datasets.Dataset:
    """`dataset` with an `embedding` column (float32, unit length; null for rows without an image).

    Every distinct image is embedded once per embedder, ever: vectors are cached by the image bytes'
    SHA-256 under `cache_dir` (default `$LLAVA_MIXES_CACHE` or `~/.cache/llava_mixes`).
    """
    model = resolve_embedder(embedder, revision=revision, device=device, precision=precision)
    root = Path(cache_dir) if cache_dir else default_cache_root()
    cache, _ = fill_cache(dataset, model, root, batch_size, num_workers)
    return attach_embeddings(dataset, cache, num_proc)
