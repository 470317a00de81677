"""Images: safe path resolution, validation by decoding, and a persistent index of what was checked.

Paths are checked lexically: a path as written in a source file must stay under `data_dir` after
normalisation (`..` and absolute paths are rejected), but symbolic links inside `data_dir` are followed,
because LLaVA playgrounds often link `coco/` or `vg/` to a shared copy. Images are decoded by content,
so a GIF or PNG behind a `.jpg` name is fine. The index remembers, per file (path, size, mtime), its
SHA-256 and whether it decodes, so a rebuild reads no image twice. Images stored inside an annotation
file (bytes, as parquet releases keep them) go through the same check, remembered by their SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image, UnidentifiedImageError

from llava_mixes import schema
from llava_mixes.errors import RecordRejected
from llava_mixes.store import ShardStore

logger = logging.getLogger(__name__)

ALTERNATE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif")
INDEX_VERSION = "v1"
INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("sha256", pa.string()),
        ("error", pa.string()),
        ("format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
    ]
)


@dataclass(frozen=True)
class ImageCheck:
    """What one image file turned out to be: its content hash, or why it cannot be used."""

    sha256: str | None
    error: str | None = None
    detail: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def contained_path(data_dir: Path, written: str) -> Path:
    """`data_dir / written`, normalised; rejects a path that leaves `data_dir`."""
    root = os.path.normpath(os.path.abspath(data_dir))
    candidate = os.path.normpath(os.path.join(root, written))
    if candidate != root and not candidate.startswith(root + os.sep):
        raise RecordRejected(schema.PATH_ESCAPES_DATA_DIR, f"{written!r} resolves outside {root}")
    return Path(candidate)


def resolve_first(data_dir: Path, names: Sequence[str], prefixes: Sequence[str] = ("",)) -> tuple[str, Path]:
    """The first of `names` (relative paths naming one image) that has a file, and that file.

    Each name is tried under each prefix, as written, then with other extensions; every name is checked
    for leaving `data_dir` before any file is looked at.
    """
    tried = []
    for name in names:
        for prefix in prefixes:
            contained_path(data_dir, os.path.join(prefix, name) if prefix else name)
    for name in names:
        for prefix in prefixes:
            primary = contained_path(data_dir, os.path.join(prefix, name) if prefix else name)
            candidates = [primary] + [
                primary.with_suffix(ext) for ext in ALTERNATE_EXTENSIONS if ext != primary.suffix.lower()
            ]
            for candidate in candidates:
                if candidate.is_file():
                    return name, candidate
            tried.append(str(primary))
    raise RecordRejected(schema.MISSING_IMAGE, f"no file at {' or '.join(tried)} (other extensions tried too)")


def resolve_image(data_dir: Path, written: str, prefixes: Sequence[str] = ("",)) -> Path:
    """Find the file for a path as written: under each prefix, as written, then with other extensions."""
    return resolve_first(data_dir, (written,), prefixes)[1]


def inspect_image(path: Path) -> ImageCheck:
    """Read, hash and fully decode one image file (see `inspect_bytes`)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return ImageCheck(None, schema.MISSING_IMAGE, f"{path}: {error}")
    return inspect_bytes(data, str(path))


def inspect_bytes(data: bytes, label: str) -> ImageCheck:
    """Hash and fully decode one image (JPEG at reduced scale, which still reads every byte); `label` names it."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, width, height = image.format, image.width, image.height
            if image_format == "JPEG":
                image.draft(image.mode, (1, 1))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return ImageCheck(digest, schema.UNDECODABLE_IMAGE, f"{label}: {error}")
    return ImageCheck(digest, format=image_format, width=width, height=height)


def _blob_key(digest: str) -> str:
    return f"sha256:{digest}"


def _index_key(path: Path) -> str | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


class ImageIndex:
    """Checks images once per file version and remembers the answers under `cache_root`."""

    def __init__(self, cache_root: Path, num_threads: int | None = None) -> None:
        self.store = ShardStore(Path(cache_root) / "image_index" / INDEX_VERSION, INDEX_SCHEMA)
        self.num_threads = num_threads or min(8, os.cpu_count() or 1)
        self.inspected = 0

    def _known(self, keys: list[str]) -> list[ImageCheck]:
        records = self.store.take(keys).to_pylist() if keys else []
        return [
            ImageCheck(record["sha256"], record["error"], None, record["format"], record["width"], record["height"])
            for record in records
        ]

    def _inspect_and_remember(
        self, items: list[Any], keys: list[str], inspect: Callable[[Any], ImageCheck]
    ) -> list[ImageCheck]:
        """Run `inspect` over `items` in threads and store each answer under its key."""
        checks = []
        with ThreadPoolExecutor(self.num_threads) as pool, self.store.writer() as writer:
            for key, check in zip(keys, pool.map(inspect, items), strict=True):
                checks.append(check)
                writer.add(
                    {
                        "key": key,
                        "sha256": check.sha256,
                        "error": check.error,
                        "format": check.format,
                        "width": check.width,
                        "height": check.height,
                    }
                )
        self.inspected += len(items)
        return checks

    def check_many(self, paths: Iterable[Path]) -> dict[Path, ImageCheck]:
        """Check each distinct path, reading only files the index has not seen in this version."""
        keys = {path: _index_key(path) for path in dict.fromkeys(paths)}
        results: dict[Path, ImageCheck] = {
            path: ImageCheck(None, schema.MISSING_IMAGE, f"{path}: file vanished")
            for path, key in keys.items()
            if key is None
        }
        known = [path for path, key in keys.items() if key is not None and key in self.store]
        results.update(zip(known, self._known([keys[path] for path in known]), strict=True))
        todo = [path for path, key in keys.items() if key is not None and path not in results]
        if todo:
            checks = self._inspect_and_remember(todo, [keys[path] for path in todo], inspect_image)
            results.update(zip(todo, checks, strict=True))
        return results

    def check_blobs(self, blobs: Iterable[tuple[str, bytes]]) -> dict[str, ImageCheck]:
        """Check images given as `(label, bytes)`; answers are keyed by label and remembered by content."""
        items = list(blobs)
        digests = {label: hashlib.sha256(data).hexdigest() for label, data in items}
        known = list(dict.fromkeys(digest for digest in digests.values() if _blob_key(digest) in self.store))
        by_digest = dict(zip(known, self._known([_blob_key(digest) for digest in known]), strict=True))
        todo: dict[str, tuple[str, bytes]] = {}
        for label, data in items:
            if digests[label] not in by_digest:
                todo.setdefault(digests[label], (label, data))
        if todo:
            checks = self._inspect_and_remember(
                list(todo.values()),
                [_blob_key(digest) for digest in todo],
                lambda item: inspect_bytes(item[1], item[0]),
            )
            by_digest.update(zip(todo, checks, strict=True))
        return {label: by_digest[digest] for label, digest in digests.items()}
