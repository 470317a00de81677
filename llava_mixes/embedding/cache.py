"""The embedding cache: one float16 vector per distinct image content (SHA-256) per embedder identity.

It lives under `<cache root>/embeddings/<embedder key>/` as an append-only `ShardStore`, so any number
of processes (one per GPU, or Ray actors through their driver) can fill it at once, an interrupted run
keeps everything it committed, and a killed process never leaves an entry that reads back wrong.

Vectors are checked at both ends: a vector an embedder returns with a NaN or infinite coordinate (also
after the cast to float16), or all zero, is stored as that image's error, never as a vector; and a stored
record whose vector is such is left out when its shard is read (`ShardStore`'s row check), so the image is
embedded again.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa

from llava_mixes import schema
from llava_mixes.embedding.embedders import Embedder
from llava_mixes.errors import LlavaMixesError
from llava_mixes.store import META_FILE, ShardStore
from llava_mixes.vectors import unusable_vectors

logger = logging.getLogger(__name__)

FLUSH_IMAGES = 4096
BAD_VECTOR = "the embedder returned a vector with a NaN or infinite coordinate, or all zero"


class EmbeddingError(LlavaMixesError, RuntimeError):
    """Some images could not be embedded; the message lists them."""


def store_schema(dim: int) -> pa.Schema:
    return pa.schema([("key", pa.string()), ("vector", pa.list_(pa.float16(), dim)), ("error", pa.string())])


def refused_records(table: pa.Table) -> tuple[np.ndarray, str]:
    """The records of a cache shard that claim a vector (no error) whose vector cannot be compared."""
    embedded = table.column("error").is_null().to_numpy(zero_copy_only=False)
    vectors = vector_array(table, table.schema.field("vector").type.list_size)
    return embedded & unusable_vectors(vectors), "a vector with a NaN or infinite coordinate, or all zero"


def open_store(directory: Path, dim: int) -> ShardStore:
    """The `ShardStore` of one embedder's cache folder, with the vector check on every shard it reads."""
    return ShardStore(directory, store_schema(dim), row_check=refused_records)


class EmbeddingCache:
    """The vectors of one embedder, keyed by image SHA-256 (see the module docstring)."""

    def __init__(self, cache_root: Path, embedder: Embedder) -> None:
        self.cache_root = Path(cache_root)
        self.embedder = embedder
        self.directory = self.cache_root / "embeddings" / embedder.key()
        if embedder.dim < 0:
            embedder.dim = self._recorded_dim()
        self.dim = embedder.dim
        self.store = open_store(self.directory, self.dim)
        self.store.write_meta({"identity": embedder.identity(), "dim": self.dim})

    def _recorded_dim(self) -> int:
        meta = self.directory / META_FILE
        if meta.exists():
            return int(json.loads(meta.read_text())["dim"])
        self.embedder.load()
        return self.embedder.dim

    def key(self) -> str:
        """The embedder's cache key: it changes whenever the vectors could (see `Embedder.key`)."""
        return self.embedder.key()

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The image hashes with no record in the cache, in the order given, each once."""
        return self.store.missing(keys)

    def vectors(self, keys: list[str]) -> tuple[np.ndarray, list[str | None]]:
        """Vectors (float16, `(len(keys), dim)`) and per-key errors (None where the image embedded)."""
        return self.store.gather(keys, "vector"), self.errors(keys)

    def errors(self, keys: list[str]) -> list[str | None]:
        """Per key, the embedding error (None where the image embedded), without reading the vectors."""
        return self.store.take(keys, ["error"]).column("error").to_pylist()


def vector_array(table: pa.Table, dim: int) -> np.ndarray:
    """The `vector` column of a cache table as a `(rows, dim)` float16 array."""
    values = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return values.reshape(table.num_rows, dim)


def vector_table(keys: list[str], vectors: np.ndarray, errors: list[str | None]) -> pa.Table:
    """Cache records from keys, a `(rows, dim)` array of an embedder's vectors (zeros where an error is given)
    and errors; a vector that cannot be compared once in float16 becomes the error `BAD_VECTOR`."""
    half = np.array(vectors, dtype=np.float16, order="C")
    bad = unusable_vectors(half) & np.array([error is None for error in errors], dtype=bool)
    if bad.any():
        logger.warning("%d images got %s; they are recorded as not embedded", int(bad.sum()), BAD_VECTOR)
        half[bad] = 0
        errors = [BAD_VECTOR if flag else error for flag, error in zip(bad.tolist(), errors, strict=True)]
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(half.reshape(-1), type=pa.float16()), half.shape[1]),
            "error": pa.array(errors, pa.string()),
        }
    )


@dataclass(frozen=True)
class ImageRef:
    """One distinct image to embed: its content hash, and its file or the dataset row holding its bytes."""

    sha256: str
    path: str | None
    row: int


def read_image_bytes(ref: ImageRef, dataset: datasets.Dataset | None) -> bytes:
    """The bytes of one image: from its file, else (no file at its path) from its row (`dataset` with
    `Image(decode=False)`). A path that is not a regular file (a folder, a pipe) counts as no file. The file is
    opened without a `stat` of its path first (one `isfile` per picture cost 4% of a 20K build's embedding
    threads), without blocking, and checked on the open descriptor."""
    if ref.path:
        try:
            descriptor = os.open(ref.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            descriptor = -1
        if descriptor >= 0 and not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
        elif descriptor >= 0:
            with open(descriptor, "rb") as handle:
                return handle.read()
    stored = dataset[ref.row][schema.IMAGE] if dataset is not None else None
    if not stored or stored.get("bytes") is None:
        raise FileNotFoundError(f"no file at {ref.path} and no image bytes in row {ref.row}")
    return stored["bytes"]
