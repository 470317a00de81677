"""Where each exported row's picture lives: referenced where it is, or written under `images_dir`.

Rows built here name their pictures by files the build resolved under its `data_dir`: such a file is referenced
when it lies under `image_folder`, or copied when it lies under `files_from`; any other file path is refused
(`ConfigError`), never read. Rows read from a published copy (`untrusted=True`) are untrusted input:

- bytes are used when their SHA-256 is the row's `image_sha256` and they decode as a picture;
- a file path is used only when it lies inside the copy's folder (`files_from`) with every symbolic link
  followed (`paths.contained`), and its bytes pass the same checks; a Hub copy (no `files_from`) holds no
  files, so such a row is skipped;
- `image_path` is looked up under `image_folder` (the user's own layout) as a clean relative path.

A picture that cannot be used skips its row, with a reason (`Missing`). Written pictures go under `images_dir`
at their `image_path` when it is a clean relative path, else at `by-sha256/<sha256><suffix>`. A file already
there is never overwritten: when it holds the picture's bytes it is reused, else the picture goes to its
`by-sha256` name. Each picture is written to a temporary file, then hard-linked into place, so that two exports
sharing `images_dir` never replace each other's pictures. A folder under `images_dir` that is a symbolic link
leading out of it is refused (`ExportError`): nothing is written outside `images_dir`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import posixpath
import re
import tempfile
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from llava_mixes import schema
from llava_mixes.errors import CacheWriteError, ConfigError, LlavaMixesError, PathEscapeError
from llava_mixes.outputs import FILE_MODE, TEMP_PREFIX, sha256_file
from llava_mixes.paths import contained, is_inside

BY_CONTENT = "by-sha256"
"""Folder under `images_dir` for pictures whose `image_path` cannot name a file there (absent, not a clean
relative path, or taken by other bytes): they are written as `by-sha256/<sha256><suffix>`."""
MAX_PICTURE_BYTES = 256 << 20
"""A picture larger than this is not read: its row is skipped (`picture_too_large`)."""
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,15}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

PICTURE_OUTSIDE_COPY = "picture_outside_copy"
PICTURE_NOT_STORED = "picture_not_stored"
IMAGE_CHECKSUM_MISMATCH = "image_checksum_mismatch"
PICTURE_TOO_LARGE = "picture_too_large"


class ExportError(LlavaMixesError):
    """An export could not be written; the message says which file and why."""


@dataclass(frozen=True)
class Missing:
    """A row whose picture cannot be used: it is skipped and counted under `reason`."""

    reason: str
    detail: str


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def clean_relative(image_path: Any) -> str | None:
    """`image_path` as a relative POSIX path that stays inside its folder and can name a file there, else None:
    no `..`, no absolute or drive path, no hidden part, no NUL or control character, every part at most 255
    bytes, at most 1024 characters, and not under `by-sha256/`."""
    if not isinstance(image_path, str) or not image_path or len(image_path) > MAX_PATH_CHARS:
        return None
    if any(ord(char) < 32 or char == "\x7f" for char in image_path):
        return None
    norm = posixpath.normpath(image_path.replace("\\", "/"))
    parts = norm.split("/")
    if norm.startswith("/") or ":" in parts[0] or parts[0] == BY_CONTENT:
        return None
    if any(part.startswith(".") or len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        return None
    return norm


def _suffix(image_path: Any) -> str:
    suffix = posixpath.splitext(image_path)[1] if isinstance(image_path, str) else ""
    return suffix if SUFFIX.match(suffix) else ".img"


def decode_error(data: bytes) -> str | None:
    """Why `data` does not decode as a picture (JPEG at reduced scale, which still reads every byte); None when
    it does."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                image.draft(image.mode, (1, 1))
            image.load()
    except Exception as error:  # noqa: BLE001 - any decoder failure on untrusted bytes is this row's data
        return f"{type(error).__name__}: {error}"
    return None


def _read_file(path: str) -> bytes | Missing:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PICTURE_BYTES + 1)
    except OSError as error:
        return Missing(schema.UNREADABLE_IMAGE, f"{path}: {os.strerror(error.errno or 0)}")
    if len(data) > MAX_PICTURE_BYTES:
        return Missing(PICTURE_TOO_LARGE, f"{path} is over {MAX_PICTURE_BYTES >> 20} MiB")
    return data


class Pictures:
    """Places the pictures of one export; `place` returns each row's picture file (absolute path)."""

    def __init__(
        self,
        image_folder: str | Path | None,
        images_dir: str | Path,
        *,
        files_from: str | Path | None = None,
        untrusted: bool = False,
        copy_files: bool = False,
        stores_pictures: bool = True,
    ) -> None:
        self.image_folder = os.path.abspath(image_folder) if image_folder is not None else None
        if self.image_folder is not None and not os.path.isdir(self.image_folder):
            raise ConfigError(f"image_folder={str(image_folder)!r} is not a folder; pass the folder the images are in")
        self.files_from = os.path.abspath(files_from) if files_from is not None else None
        self.untrusted = untrusted
        self.copy_files = copy_files
        self.stores_pictures = stores_pictures
        self.images_dir = os.path.abspath(images_dir)
        self._images_real: str | None = None
        self.written = 0
        self._placed: dict[str, str] = {}  # relative path under images_dir -> sha256 of what is there
        self._folders: set[str] = set()  # folders under images_dir known to lie inside it
        self._decoded: dict[str, str | None] = {}  # this chunk's sha256 -> why they do not decode (None: they do)

    @property
    def root(self) -> str:
        """The folder that relative picture paths are relative to: `image_folder`, else `images_dir`."""
        return self.image_folder if self.image_folder is not None else self.images_dir

    def check_ahead(self, rows: Iterable[dict[str, Any]], pool: Executor) -> None:
        """Decode, on `pool`'s threads, the pictures that `place` will check among `rows`' bytes (rows read from a
        published copy), so that their answers are ready when it gets to them."""
        if not self.untrusted:
            return
        datas = {}
        for row in rows:
            data = (row.get(schema.IMAGE) or {}).get("bytes")
            if isinstance(data, bytes) and len(data) <= MAX_PICTURE_BYTES:
                datas[id(data)] = data
        for sha, error in pool.map(
            lambda data: (hashlib.sha256(data).hexdigest(), decode_error(data)), datas.values()
        ):
            self._decoded[sha] = error

    def place(self, row: dict[str, Any]) -> str | Missing | None:
        """The absolute path of the row's picture (written first when needed); None for a text-only row."""
        image = row.get(schema.IMAGE) or {}
        image_path = row.get(schema.IMAGE_PATH)
        data, file = image.get("bytes"), image.get("path")
        if data is None and image_path is None and not file:
            return None
        if data is None and file and not self.untrusted and os.path.isabs(file):
            return self._built_file(row, file)
        if self.image_folder is not None:
            relative = clean_relative(image_path)
            candidate = os.path.join(self.image_folder, relative) if relative else None
            if candidate is not None and os.path.isfile(candidate):
                return candidate
        if data is not None:
            return self._write(row, data)
        if file and self.untrusted:
            return self._copy_file(row, file)
        if self.image_folder is None and self.untrusted and self.stores_pictures:
            return Missing(
                PICTURE_NOT_STORED,
                f"the row holds neither picture bytes nor a file; its image_path {image_path!r} could be looked up "
                "with image_folder=<your copy of the original image layout>",
            )
        if self.image_folder is None:
            raise ConfigError(
                f"row {row.get(schema.ID)!r} names its picture only by image_path={image_path!r} (a copy published "
                "with images='paths'): pass image_folder=<your copy of the original image layout>"
            )
        return Missing(schema.MISSING_IMAGE, f"no file {image_path!r} under {self.image_folder}")

    def _built_file(self, row: dict[str, Any], file: str) -> str | Missing:
        """A picture the build resolved to a file: referenced under `image_folder`, or copied from `files_from`."""
        path = os.path.abspath(file)
        if self.image_folder is not None and _inside(path, self.image_folder):
            return path
        if self.copy_files and self.files_from is not None and _inside(path, self.files_from):
            data = _read_file(path) if os.path.isfile(path) else Missing(schema.MISSING_IMAGE, f"no file {file!r}")
            return data if isinstance(data, Missing) else self._write(row, data)
        raise ConfigError(
            f"row {row.get(schema.ID)!r}: its picture {file!r} is not under image_folder={self.image_folder!r}"
            + (f" nor files_from={self.files_from!r}" if self.copy_files else "")
            + "; pass image_folder=<the data_dir the config was built from> to reference the pictures where they "
            "are, or images_dir=<folder> and files_from=<that data_dir> to copy them there"
        )

    def _copy_file(self, row: dict[str, Any], file: str) -> str | Missing:
        """An untrusted row's picture given as a file path: read only inside the copy's folder."""
        if self.files_from is None:
            return Missing(
                PICTURE_NOT_STORED,
                f"the row names its picture by the path {file!r} and holds no bytes: a Hub copy's paths name "
                "nothing here",
            )
        if "\0" in file:
            return Missing(PICTURE_OUTSIDE_COPY, f"the picture path {file!r} holds a NUL byte")
        try:
            source = contained(self.files_from, file, "the picture")
        except PathEscapeError as error:
            return Missing(PICTURE_OUTSIDE_COPY, str(error))
        if not source.is_file():
            return Missing(schema.MISSING_IMAGE, f"the picture {file!r} is not a file in the copy")
        data = _read_file(str(source))
        return data if isinstance(data, Missing) else self._write(row, data)

    def _write(self, row: dict[str, Any], data: bytes) -> str | Missing:
        """Check the picture's bytes, then write them under `images_dir` (or find them there already)."""
        if len(data) > MAX_PICTURE_BYTES:
            return Missing(PICTURE_TOO_LARGE, f"{len(data)} bytes, over {MAX_PICTURE_BYTES >> 20} MiB")
        sha = hashlib.sha256(data).hexdigest()
        expected = row.get(schema.IMAGE_SHA256)
        if expected != sha and (self.untrusted or expected is not None):
            return Missing(IMAGE_CHECKSUM_MISMATCH, f"the picture's SHA-256 is {sha}; the row says {expected!r}")
        if self.untrusted:
            error = self._decoded[sha] if sha in self._decoded else decode_error(data)
            if error is not None:
                return Missing(schema.UNDECODABLE_IMAGE, error)
        relative = clean_relative(row.get(schema.IMAGE_PATH))
        by_content = f"{BY_CONTENT}/{sha}{_suffix(row.get(schema.IMAGE_PATH))}"
        candidates = [relative] if relative is not None and self._placed.get(relative, sha) == sha else []
        for candidate in [*candidates, by_content]:
            if self._placed.get(candidate) == sha:
                return os.path.join(self.images_dir, *candidate.split("/"))
            target = self._put(candidate, data, sha)
            if target is not None:
                self._placed[candidate] = sha
                return target
        taken = os.path.join(self.images_dir, *by_content.split("/"))
        raise ExportError(
            f"{taken} exists and holds other bytes than its name says; "
            "llava-mixes never overwrites a file it cannot tell it wrote: remove it, or choose another images_dir"
        )

    def _folder(self, relative_folder: str) -> str | None:
        """`images_dir/relative_folder`, created, once it is known to lie inside `images_dir`; None when a file
        is in the way. A symbolic link leading out of `images_dir` raises `ExportError`."""
        if self._images_real is None:
            os.makedirs(self.images_dir, exist_ok=True)
            self._images_real = os.path.realpath(self.images_dir)
        current = self.images_dir
        for part in [part for part in relative_folder.split("/") if part]:
            current = os.path.join(current, part)
            if current in self._folders:
                continue
            if os.path.islink(current):
                real = os.path.realpath(current)
                if not is_inside(Path(self._images_real), Path(real)):
                    raise ExportError(
                        f"{current} is a symbolic link leading out of images_dir (to {real}); export writes only "
                        "inside images_dir: remove the link, or choose another images_dir"
                    )
            if not os.path.lexists(current):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(current)
            if not os.path.isdir(current):
                return None
            self._folders.add(current)
        return current

    def _put(self, relative: str, data: bytes, sha: str) -> str | None:
        """Write `data` at `images_dir/relative` unless a file is there: the path when it holds `data` now (written
        or found), None when it holds other bytes or a file is in the way."""
        folder_part, _, name = relative.rpartition("/")
        try:
            folder = self._folder(folder_part)
            if folder is None:
                return None
            target = os.path.join(folder, name)
            if os.path.lexists(target):
                return target if _holds(target, sha) else None
            handle, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=folder)
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                os.chmod(temp, FILE_MODE)
                try:
                    os.link(temp, target)
                except FileExistsError:
                    return target if _holds(target, sha) else None
                except OSError as error:  # a file system without hard links: replace, after a last look
                    if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                        raise
                    if os.path.lexists(target):
                        return target if _holds(target, sha) else None
                    os.replace(temp, target)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        except OSError as error:
            raise CacheWriteError(
                f"cannot write the picture {relative} under images_dir={self.images_dir!r}: "
                f"{os.strerror(error.errno) if error.errno else error}. Free some space there or choose another "
                "images_dir"
            ) from error
        self.written += 1
        return target


def _holds(path: str, sha: str) -> bool:
    """Whether `path` is a regular file (not a link) whose bytes have SHA-256 `sha`."""
    try:
        return not os.path.islink(path) and os.path.isfile(path) and sha256_file(path) == sha
    except OSError:
        return False
