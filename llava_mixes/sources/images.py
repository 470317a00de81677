"""Images: safe path resolution, validation by decoding, and a persistent index of what was checked.

Paths are checked lexically: a path as written in a source file must stay under `data_dir` after
normalisation (`..` and absolute paths are rejected), but symbolic links inside `data_dir` are followed,
because LLaVA playgrounds often link `coco/` or `vg/` to a shared copy. Images are decoded by content,
so a GIF or PNG behind a `.jpg` name is fine. The index remembers, per file (path, size, mtime, ctime),
its SHA-256 and whether it decodes, so a rebuild reads no image twice. It remembers only what follows from
the bytes: a file that is missing or cannot be read (an I/O or permission error) is looked at again by the
next build. Images stored inside an annotation file (bytes, as parquet releases keep them) go through the
same check, remembered by their SHA-256. Resolver and index can log every file they looked at, and every
path they looked for in vain, into an `InputLog` (see `sources.inputs`).
"""

from __future__ import annotations

import errno
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
from llava_mixes.sources.inputs import InputLog
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
    errno: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def from_bytes(self) -> bool:
        """Whether this answer follows from the file's bytes (so it may be remembered), not from an I/O error."""
        return self.error not in (schema.MISSING_IMAGE, schema.UNREADABLE_IMAGE)


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

    def __init__(self, data_dir: Path, prefixes: Sequence[str] = ("",), inputs: InputLog | None = None) -> None:
        """`inputs`: where every path looked for and not found is logged."""
        self.root = os.path.normpath(os.path.abspath(data_dir))
        self.prefixes = tuple(prefixes)
        self.inputs = inputs
        self._answers: dict[tuple[str, ...], tuple[str, str] | RecordRejected] = {}

    def resolve(self, written: str) -> str:
        """The file for one path as written; raises `RecordRejected` when it leaves data_dir or is missing."""
        return self.resolve_first((written,))[1]

    def resolve_first(self, names: Sequence[str]) -> tuple[str, str]:
        """The first of `names` (relative paths naming one image) that has a file, and that file. Every
        name is checked for leaving `data_dir` before any file is looked at."""
        key = tuple(names)
        answer = self._answers.get(key)
        if answer is None:
            try:
                answer = self._find(key)
            except RecordRejected as rejection:
                answer = rejection
            self._answers[key] = answer
        if isinstance(answer, RecordRejected):
            raise answer
        return answer

    def _absent(self, path: str) -> None:
        if self.inputs is not None:
            self.inputs.absent(path)

    def _find(self, names: tuple[str, ...]) -> tuple[str, str]:
        places = [(name, os.path.join(prefix, name) if prefix else name) for name in names for prefix in self.prefixes]
        primaries = [(name, _contained(self.root, place)) for name, place in places]
        for name, primary in primaries:
            if os.path.isfile(primary):
                return name, primary
            self._absent(primary)
            stem, suffix = os.path.splitext(primary)
            for extension in ALTERNATE_EXTENSIONS:
                if extension != suffix.lower():
                    if os.path.isfile(stem + extension):
                        return name, stem + extension
                    self._absent(stem + extension)
        tried = " or ".join(primary for _, primary in primaries)
        raise RecordRejected(schema.MISSING_IMAGE, f"no file at {tried} (other extensions tried too)")


def resolve_first(data_dir: Path, names: Sequence[str], prefixes: Sequence[str] = ("",)) -> tuple[str, Path]:
    """The first of `names` (relative paths naming one image) that has a file, and that file."""
    name, path = ImageResolver(data_dir, prefixes).resolve_first(names)
    return name, Path(path)


def resolve_image(data_dir: Path, written: str, prefixes: Sequence[str] = ("",)) -> Path:
    """The file for one path as written (see `ImageResolver`)."""
    return resolve_first(data_dir, (written,), prefixes)[1]


def inspect_image(path: str | Path) -> ImageCheck:
    """Read, hash and fully decode one image file (see `inspect_bytes`). A file gone by now is a
    `missing_image`; any other error reading it is an `unreadable_image` whose detail keeps the errno."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as error:
        return ImageCheck(None, schema.MISSING_IMAGE, f"{path}: {error.strerror}", errno=error.errno)
    except OSError as error:
        code = errno.errorcode.get(error.errno, "no errno") if error.errno is not None else "no errno"
        detail = f"{path}: {code} ({error.errno}): {error.strerror or error}"
        return ImageCheck(None, schema.UNREADABLE_IMAGE, detail, errno=error.errno)
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


def _index_key(stat: os.stat_result, path: str) -> str:
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


class ImageIndex:
    """Checks images once per file version and remembers the answers under `cache_root`."""

    def __init__(self, cache_root: Path, num_threads: int | None = None) -> None:
        self.store = ShardStore(Path(cache_root) / "image_index" / INDEX_VERSION, INDEX_SCHEMA)
        self.num_threads = num_threads or min(8, os.cpu_count() or 1)
        self.inspected = 0
        self._seen: dict[str, ImageCheck] = {}

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
                if not check.from_bytes:
                    continue
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

    def check_many(self, paths: Iterable[str | Path], inputs: InputLog | None = None) -> dict[str, ImageCheck]:
        """Check each distinct path, reading only files the index has not seen in this version.

        Answers are also remembered in this object, so a path met again in the same build costs nothing.
        `inputs`: where each path met for the first time is logged, with its stat (or its I/O error).
        """
        wanted = [str(path) for path in dict.fromkeys(paths)]
        results = {path: self._seen[path] for path in wanted if path in self._seen}
        stats = {path: _stat(path) for path in wanted if path not in results}
        keys = {path: _index_key(stat, path) for path, stat in stats.items() if stat is not None}
        for path, stat in stats.items():
            if stat is None:
                results[path] = ImageCheck(None, schema.MISSING_IMAGE, f"{path}: file vanished")
        known = [path for path, key in keys.items() if key in self.store]
        results.update(zip(known, self._known([keys[path] for path in known]), strict=True))
        todo = [path for path in keys if path not in results]
        if todo:
            checks = self._inspect_and_remember(todo, [keys[path] for path in todo], inspect_image)
            results.update(zip(todo, checks, strict=True))
        if inputs is not None:
            self._log(stats, results, inputs)
        self._seen.update(results)
        return results

    @staticmethod
    def _log(stats: dict[str, os.stat_result | None], results: dict[str, ImageCheck], inputs: InputLog) -> None:
        for path, stat in stats.items():
            check = results[path]
            if stat is None or check.error == schema.MISSING_IMAGE:
                inputs.absent(path)
            elif check.error == schema.UNREADABLE_IMAGE:
                inputs.unreadable(path, check.errno, check.detail or "")
            else:
                inputs.image(path, stat)

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
