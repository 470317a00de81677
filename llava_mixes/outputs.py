"""The folders a command writes into (`export --out` and `--images-dir`, `report --out`): checked before any work,
locked while written, and never made to lose a file the project did not write.

- `output_folder(path, what, inputs)` refuses a path that exists and is not a folder (a file, a dangling or
  looping symbolic link), and one that lies inside a folder the command reads (`inputs`: a published copy, a
  data folder); a folder the command reads that lies inside it is refused too where `nested_inputs` is False.
- `OutputFolder` (a context manager) creates the folder and holds its lock (`LOCK_FILE`, `filelock`): a second
  command writing into the same folder waits for the first. Its record (`RECORD_FILE`) holds the SHA-256 of
  every file the project wrote there. `claim(name)` allows a file to be written only when it is absent or is
  the project's own, unchanged since (same SHA-256); anything else is refused with an error naming it. The
  same holds for one entry of a JSON object file that others write too (`claim_entry`, for LLaMA-Factory's
  `dataset_info.json`). Nothing that is not in the record is ever overwritten or deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock

from llava_mixes.errors import CacheWriteError, ConfigError
from llava_mixes.paths import is_inside

logger = logging.getLogger(__name__)

RECORD_FILE = ".llava_mixes_outputs.json"
LOCK_FILE = ".llava_mixes_outputs.lock"
TEMP_PREFIX = ".llava_mixes-tmp-"
RECORD_FORMAT = 1
MAX_RECORD_BYTES = 64 << 20


def _file_mode() -> int:
    """The mode a plain `open` creates files with (0o666 less the umask); `mkstemp` would leave 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    return str(error) or type(error).__name__


def output_folder(
    path: str | os.PathLike,
    what: str,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
    *,
    nested_inputs: bool = True,
) -> Path:
    """`path` resolved, after checking it can be the folder `what` (a flag name) writes into; not created.

    Refused: an empty name or one holding a NUL byte, a path that exists and is not a folder, a dangling or
    looping symbolic link, and a folder that lies inside (or is) one of `inputs` (label -> folder the command
    reads). With `nested_inputs=False`, an input inside it is refused too.
    """
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not text or "\0" in text:
        raise ConfigError(f"{what}={text!r} is not allowed; name a folder (it is created when absent)")
    candidate = Path(text)
    try:
        if os.path.lexists(candidate):
            resolved = candidate.resolve(strict=True)
            if not resolved.is_dir():
                raise ConfigError(
                    f"{what}={text!r} exists and is not a folder; name a folder (it is created when absent)"
                )
        else:
            resolved = candidate.resolve()
            with contextlib.suppress(FileNotFoundError):  # absent is fine; a name too long or a file parent is not
                os.stat(resolved)
    except (OSError, RuntimeError) as error:  # RuntimeError: a symbolic link loop (Python < 3.13)
        why = "a symbolic link loop" if isinstance(error, RuntimeError) else _reason(error)
        raise ConfigError(f"{what}={text!r} cannot be used as a folder: {why}") from error
    for label, folder in (inputs or {}).items():
        if folder is None:
            continue
        try:
            base = Path(folder).resolve()
        except (OSError, RuntimeError, ValueError):  # an input that cannot be resolved holds nothing to protect
            continue
        if is_inside(base, resolved):
            raise ConfigError(
                f"{what}={text!r} lies inside {label} {base}, which this command reads; write somewhere outside it"
            )
        if not nested_inputs and is_inside(resolved, base):
            raise ConfigError(
                f"{what}={text!r} holds {label} {base}, which this command reads; write somewhere that does not"
            )
    return resolved


def _read_record(path: Path) -> dict[str, Any]:
    """The record of a folder: `{"files": {name: sha256}, "entries": {file: {key: value}}}`; empty when absent.
    A record that cannot be read is set aside as unknown (nothing is then taken as the project's own)."""
    empty: dict[str, Any] = {"format": RECORD_FORMAT, "files": {}, "entries": {}}
    if not os.path.lexists(path):
        return empty
    try:
        if path.is_symlink() or path.stat().st_size > MAX_RECORD_BYTES:
            raise ValueError("not a small regular file")
        record = json.loads(path.read_text(encoding="utf-8"))
        files, entries = record["files"], record["entries"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ValueError("files is not a mapping of names to SHA-256s")
        if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
            raise ValueError("entries is not a mapping of files to entries")
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("%s cannot be read (%s): no file there is taken as written by llava-mixes", path, error)
        return empty
    return {"format": RECORD_FORMAT, "files": dict(files), "entries": {k: dict(v) for k, v in entries.items()}}


def write_json_atomic(path: Path, value: Any) -> None:
    """Write `value` as indented JSON to `path` through a temporary file in its folder and a rename."""
    handle, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(value, file, indent=2, ensure_ascii=False)
            file.write("\n")
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _owned(record: dict[str, Any], name: str, target: Path) -> bool:
    """Whether `target` is the regular file the record says the project wrote as `name`, unchanged since."""
    recorded = record["files"].get(name)
    if recorded is None or target.is_symlink() or not target.is_file():
        return False
    try:
        return sha256_file(target) == recorded
    except OSError:
        return False


def _refuse_foreign(folder: Path, name: str, record: dict[str, Any], what: str) -> None:
    target = folder / name
    if os.path.lexists(target) and not _owned(record, name, target):
        raise ConfigError(
            f"{target} exists and llava-mixes did not write it (or it changed since); it is never overwritten: "
            f"move it away, or choose another {what}"
        )


def check_claims(folder: Path, names: list[str], what: str) -> None:
    """Before any work: raise `ConfigError` naming the first of `names` in `folder` that `OutputFolder.claim`
    would refuse. Nothing is created or locked; the claim itself checks again."""
    if folder.is_dir():
        record = _read_record(folder / RECORD_FILE)
        for name in names:
            _refuse_foreign(folder, name, record, what)


class OutputFolder:
    """A checked output folder, created and locked while open; see the module docstring."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._lock: FileLock | None = None
        self._record: dict[str, Any] = {}

    def __enter__(self) -> OutputFolder:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as error:
            raise ConfigError(f"{self.what}={str(self.path)!r} cannot be created: a file is in the way") from error
        except OSError as error:
            raise CacheWriteError(f"cannot create {self.what}={str(self.path)!r}: {_reason(error)}") from error
        lock = FileLock(str(self.path / LOCK_FILE))
        try:
            lock.acquire(timeout=1)
        except TimeoutError:
            logger.warning("waiting for another llava-mixes command writing into %s", self.path)
            lock.acquire()
        except OSError as error:
            raise CacheWriteError(f"cannot lock {self.what}={str(self.path)!r}: {_reason(error)}") from error
        self._lock = lock
        self._record = _read_record(self.path / RECORD_FILE)
        for leftover in self.path.glob(f"{TEMP_PREFIX}*"):  # a killed command's; no other is writing here now
            with contextlib.suppress(OSError):
                leftover.unlink()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def claim(self, name: str) -> Path:
        """`folder/name`, once it is known that it may be written: it is absent, or it is the file the project
        wrote there, unchanged. Anything else raises `ConfigError` naming it."""
        _refuse_foreign(self.path, name, self._record, self.what)
        return self.path / name

    def written(self, name: str, sha256: str | None = None) -> None:
        """Record `folder/name` as the project's own, with the SHA-256 of what it wrote there (read from the file
        when not given); saved at once."""
        self._record["files"][name] = sha256 or sha256_file(self.path / name)
        self._save()

    def claim_entry(self, file: str, key: str, present: Any) -> None:
        """Allow the entry `key` of the JSON object file `file` to be (re)written: it is absent (`present` is
        None), or it is the entry the project wrote. Anything else raises `ConfigError` naming it."""
        if present is not None and self._record["entries"].get(file, {}).get(key) != present:
            raise ConfigError(
                f"{self.path / file} already has an entry {key!r} that llava-mixes did not write (or that changed "
                "since); it is never overwritten: choose another name, or remove that entry"
            )

    def entry_written(self, file: str, key: str, value: Any) -> None:
        """Record the entry `key` of `file` as the project's own; saved at once."""
        self._record["entries"].setdefault(file, {})[key] = value
        self._save()

    def drop(self, name: str) -> None:
        """Delete `folder/name` if it is the project's own, unchanged; keep it otherwise."""
        target = self.path / name
        if _owned(self._record, name, target):
            target.unlink()
            del self._record["files"][name]
            self._save()

    def owned_names(self) -> list[str]:
        """The names of the files the record says the project wrote here."""
        return sorted(self._record["files"])

    def _save(self) -> None:
        try:
            write_json_atomic(self.path / RECORD_FILE, self._record)
        except OSError as error:
            raise CacheWriteError(f"cannot write {self.path / RECORD_FILE}: {_reason(error)}") from error
