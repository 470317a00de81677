"""Where each exported row's picture lives: referenced in the folder it was built from, or written out.

A row's picture is referenced in place when it is a file under `image_folder` (the `data_dir` a config was
built from, or the user's copy of the original layout for a copy published with `images="paths"`). Pictures
that exist only as bytes (a published copy with embedded images, zh-600k images stored in their release), and
every picture when `images_dir` is given without `image_folder`, are written under `images_dir` at their
`image_path`, one atomic file each (temporary name, then rename), once per distinct path.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llava_mixes import schema
from llava_mixes.errors import ConfigError

BY_CONTENT = "by-sha256"
"""Folder under `images_dir` for pictures whose `image_path` cannot name a file there (absent, leaving the
folder, or already taken by another picture): they are written as `by-sha256/<sha256><suffix>`."""


def _file_mode() -> int:
    """The mode a plain `open` creates files with (0o666 less the umask); `mkstemp` would leave 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


@dataclass(frozen=True)
class Missing:
    """A row whose picture cannot be found: it is skipped and counted under `reason`."""

    reason: str
    detail: str


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _clean_relative(image_path: str | None) -> str | None:
    """`image_path` as a relative POSIX path that stays inside its folder, else None."""
    if not image_path:
        return None
    norm = posixpath.normpath(image_path.replace("\\", "/"))
    if norm.startswith(("/", "../")) or norm in (".", "..") or ":" in norm.split("/", 1)[0]:
        return None
    return norm


class Pictures:
    """Places the pictures of one export; `place` returns each row's picture file (absolute path)."""

    def __init__(self, image_folder: str | Path | None, images_dir: str | Path | None, default_images_dir: Path):
        self.image_folder = os.path.abspath(image_folder) if image_folder is not None else None
        if self.image_folder is not None and not os.path.isdir(self.image_folder):
            raise ConfigError(f"image_folder={str(image_folder)!r} is not a folder; pass the folder the images are in")
        self.copy_files = images_dir is not None and image_folder is None
        self.images_dir = os.path.abspath(images_dir if images_dir is not None else default_images_dir)
        self.written = 0
        self._placed: dict[str, str | None] = {}  # relative path under images_dir -> sha256 of what is there

    @property
    def root(self) -> str:
        """The folder that relative picture paths are relative to: `image_folder`, else `images_dir`."""
        return self.image_folder if self.image_folder is not None else self.images_dir

    def place(self, row: dict[str, Any]) -> str | Missing | None:
        """The absolute path of the row's picture (written first when needed); None for a text-only row."""
        image = row.get(schema.IMAGE) or {}
        image_path = row.get(schema.IMAGE_PATH)
        data, file = image.get("bytes"), image.get("path")
        if data is None and image_path is None and not file:
            return None
        if data is None and file and os.path.isabs(file):
            return self._file_picture(row, file)
        if self.image_folder is not None:
            relative = _clean_relative(image_path)
            candidate = os.path.join(self.image_folder, relative) if relative else None
            if candidate is not None and os.path.isfile(candidate):
                return candidate
        if data is not None:
            return self._write(row, lambda target: Path(target).write_bytes(data))
        if self.image_folder is None:
            raise ConfigError(
                f"row {row.get(schema.ID)!r} names its picture only by image_path={image_path!r} (a copy published "
                "with images='paths'): pass image_folder=<your copy of the original image layout>"
            )
        return Missing(schema.MISSING_IMAGE, f"no file {image_path!r} under {self.image_folder}")

    def _file_picture(self, row: dict[str, Any], file: str) -> str | Missing:
        """A picture the build resolved to a file: referenced under `image_folder`, or copied to `images_dir`."""
        if self.image_folder is not None and _inside(os.path.abspath(file), self.image_folder):
            return os.path.abspath(file)
        if not self.copy_files:
            where = (
                f"is not under image_folder={self.image_folder!r}"
                if self.image_folder is not None
                else "is a file and no image_folder was given"
            )
            raise ConfigError(
                f"row {row.get(schema.ID)!r}: its picture {file!r} {where}; pass image_folder=<the data_dir the "
                "config was built from> to reference the pictures where they are, or images_dir=<folder> (without "
                "image_folder) to copy them there"
            )
        if not os.path.isfile(file):
            return Missing(schema.MISSING_IMAGE, f"no file {file!r}")
        return self._write(row, lambda target: shutil.copyfile(file, target))

    def _target(self, row: dict[str, Any]) -> str:
        """The relative path under `images_dir` for this row's picture: its `image_path`, unless unusable."""
        sha = row.get(schema.IMAGE_SHA256)
        relative = _clean_relative(row.get(schema.IMAGE_PATH))
        if relative is not None and (relative not in self._placed or self._placed[relative] == sha is not None):
            return relative
        suffix = posixpath.splitext(str(row.get(schema.IMAGE_PATH) or ""))[1][:16] or ".img"
        name = sha or hashlib.sha256(repr(row.get(schema.ID)).encode()).hexdigest()
        return f"{BY_CONTENT}/{name}{suffix}"

    def _write(self, row: dict[str, Any], write: Any) -> str:
        relative = self._target(row)
        target = os.path.join(self.images_dir, *relative.split("/"))
        sha = row.get(schema.IMAGE_SHA256)
        if relative in self._placed:
            return target
        if not (sha is not None and os.path.isfile(target) and _sha256_file(target) == sha):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            handle, temp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(target))
            os.close(handle)
            try:
                write(temp)
                os.chmod(temp, FILE_MODE)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            self.written += 1
        self._placed[relative] = sha
        return target
