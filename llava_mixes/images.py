"""Image files: safe path resolution, validation by decoding, and a persistent index of what was checked.

Paths are checked lexically: a path as written in a source file must stay under `data_dir` after
normalisation (`..` and absolute paths are rejected), but symbolic links inside `data_dir` are followed,
because LLaVA playgrounds often link `coco/` or `vg/` to a shared copy. Images are decoded by content,
so a GIF or PNG behind a `.jpg` name is fine. The index remembers, per file (path, size, mtime), its
SHA-256 and whether it decodes, so a rebuild reads no image twice.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


def _contained(root: str, written: str) -> str:
    candidate = os.path.normpath(os.path.join(root, written))
    if candidate != root and not candidate.startswith(root + os.sep):
        raise RecordRejected(schema.PATH_ESCAPES_DATA_DIR, f"{written!r} resolves outside {root}")
    return candidate


def contained_path(data_dir: Path, written: str) -> Path:
    """`data_dir / written`, normalised; rejects a path that leaves `data_dir`."""
    return Path(_contained(os.path.normpath(os.path.abspath(data_dir)), written))


class ImageResolver:
    """Finds the file for each path as written in a source (under each prefix, as written, then with other
    extensions), remembering every answer, rejections included, for the length of a build."""

    def __init__(self, data_dir: Path, prefixes: Sequence[str] = ("",)) -> None:
        self.root = os.path.normpath(os.path.abspath(data_dir))
        self.prefixes = tuple(prefixes)
        self._answers: dict[str, str | RecordRejected] = {}

    def resolve(self, written: str) -> str:
        answer = self._answers.get(written)
        if answer is None:
            try:
                answer = self._find(written)
            except RecordRejected as rejection:
                answer = rejection
            self._answers[written] = answer
        if isinstance(answer, RecordRejected):
            raise answer
        return answer

    def _find(self, written: str) -> str:
        tried = []
        for prefix in self.prefixes:
            primary = _contained(self.root, os.path.join(prefix, written) if prefix else written)
            if os.path.isfile(primary):
                return primary
            stem, suffix = os.path.splitext(primary)
            for extension in ALTERNATE_EXTENSIONS:
                if extension != suffix.lower() and os.path.isfile(stem + extension):
                    return stem + extension
            tried.append(primary)
        raise RecordRejected(schema.MISSING_IMAGE, f"no file at {' or '.join(tried)} (other extensions tried too)")


def resolve_image(data_dir: Path, written: str, prefixes: Sequence[str] = ("",)) -> Path:
    """The file for one path as written (see `ImageResolver`)."""
    return Path(ImageResolver(data_dir, prefixes).resolve(written))


def inspect_image(path: str | Path) -> ImageCheck:
    """Read, hash and fully decode one image (JPEG at reduced scale, which still reads every byte)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        return ImageCheck(None, schema.MISSING_IMAGE, f"{path}: {error}")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, width, height = image.format, image.width, image.height
            if image_format == "JPEG":
                image.draft(image.mode, (1, 1))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return ImageCheck(digest, schema.UNDECODABLE_IMAGE, f"{path}: {error}")
    return ImageCheck(digest, format=image_format, width=width, height=height)


def _index_key(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


class ImageIndex:
    """Checks images once per file version and remembers the answers under `cache_root`."""

    def __init__(self, cache_root: Path, num_threads: int | None = None) -> None:
        self.store = ShardStore(Path(cache_root) / "image_index" / INDEX_VERSION, INDEX_SCHEMA)
        self.num_threads = num_threads or min(8, os.cpu_count() or 1)
        self.inspected = 0
        self._seen: dict[str, ImageCheck] = {}

    def check_many(self, paths: Iterable[str | Path]) -> dict[str, ImageCheck]:
        """Check each distinct path, reading only files the index has not seen in this version.

        Answers are also remembered in this object, so a path met again in the same build costs nothing.
        """
        wanted = [str(path) for path in dict.fromkeys(paths)]
        results = {path: self._seen[path] for path in wanted if path in self._seen}
        keys = {path: _index_key(path) for path in wanted if path not in results}
        for path, key in keys.items():
            if key is None:
                results[path] = ImageCheck(None, schema.MISSING_IMAGE, f"{path}: file vanished")
        known = [path for path, key in keys.items() if key is not None and key in self.store]
        if known:
            table = self.store.take([keys[path] for path in known]).to_pylist()
            for path, record in zip(known, table, strict=True):
                results[path] = ImageCheck(
                    record["sha256"], record["error"], None, record["format"], record["width"], record["height"]
                )
        todo = [path for path, key in keys.items() if key is not None and path not in results]
        if todo:
            with ThreadPoolExecutor(self.num_threads) as pool, self.store.writer() as writer:
                for path, check in zip(todo, pool.map(inspect_image, todo), strict=True):
                    results[path] = check
                    writer.add(
                        {
                            "key": keys[path],
                            "sha256": check.sha256,
                            "error": check.error,
                            "format": check.format,
                            "width": check.width,
                            "height": check.height,
                        }
                    )
            self.inspected += len(todo)
        self._seen.update(results)
        return results
