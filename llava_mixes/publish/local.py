"""A published repo's tree in a local folder: a publish target with a lock and a journalled, repairable commit.

The folder is untrusted (it may hold the user's own files, links, or an edited copy), and one publish at a time
writes it:
- **A lock.** Every read-modify-commit holds `.llava_mixes.lock` (`filelock`), so two publishes into one folder
  run one after the other; a lock file that is a link or not a file is refused.
- **Only what it wrote.** A commit deletes only files the old manifest records for the configs it republishes,
  and only while their bytes are still the recorded ones (else it stops, naming the file). It writes only the
  release's files, into folders that resolve inside the folder (a folder that is a link leading out is refused).
- **A journal.** The release is written whole into a staging folder inside the folder first. The commit then
  records what it will move and delete in `.llava_mixes-commit.json` (written atomically), moves the data files
  into place, deletes the stale ones, moves the card and then the manifest, and only then removes the journal
  and the staging folder. A commit killed at any point leaves either the old release untouched (no journal: the
  staging folder is only scratch) or a journal from which the next publish, under the lock, finishes the new
  release (`recover`: every file is taken from the staging folder or found in place with its recorded SHA-256)
  before it does anything else; `check-repo` reports the unfinished state meanwhile. Staging folders left by a
  killed publish are removed the same way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from llava_mixes.errors import CacheWriteError, PathEscapeError, PublishError
from llava_mixes.paths import contained
from llava_mixes.publish.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, SHA256_PATTERN, repo_path
from llava_mixes.publish.parquet import sha256_file
from llava_mixes.publish.repos import STAGING_PREFIX, Commit
from llava_mixes.store import write_atomic

logger = logging.getLogger(__name__)

LOCK_FILE = ".llava_mixes.lock"
JOURNAL_FILE = ".llava_mixes-commit.json"
JOURNAL_FORMAT = 1
JOURNAL_TEMP = re.compile(r"^\.tmp-[0-9a-f]{32}-" + re.escape(JOURNAL_FILE) + "$")
STAGING_NAME = re.compile("^" + re.escape(STAGING_PREFIX) + r"[A-Za-z0-9_]{1,64}$")


def tree_files(root: Path) -> list[str]:
    """The repo paths of every file or link under `root` (links are listed, never followed), dot files and dot
    folders aside, sorted."""
    found = []
    for folder, folders, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        folders[:] = [name for name in folders if not name.startswith(".")]
        links = [name for name in folders if os.path.islink(os.path.join(folder, name))]
        for name in [*files, *links]:
            if not name.startswith("."):
                found.append((relative / name).as_posix())
    return sorted(found)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


class LocalRepo:
    """A repo tree in a local folder (see the module docstring); it has no branches, pull requests or tags."""

    keeps_tags = False
    create_pr = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = FileLock(str(self.root / LOCK_FILE))

    def describe(self) -> str:
        return str(self.root)

    def _failure(self, action: str, error: OSError) -> PublishError:
        reason = os.strerror(error.errno) if error.errno else str(error)
        where = f"{error.filename}: " if error.filename else ""
        return PublishError(
            f"{action} in --local-dir {str(self.root)!r} failed ({where}{reason}); free some space there or make it "
            "writable, or choose another folder"
        )

    def open(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise PublishError(f"--local-dir {str(self.root)!r} is a file, not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._failure("creating the folder", error) from None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock; on taking it, finish an interrupted commit and remove stale staging folders."""
        path = self.root / LOCK_FILE
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise PublishError(f"{path} is a link or not a file; llava-mixes locks the folder with it: remove it")
        try:
            try:
                self._lock.acquire(timeout=0)
            except Timeout:
                logger.warning("%s: another publish into this folder is running; waiting for it to finish", self.root)
                self._lock.acquire()
        except OSError as error:
            raise self._failure("locking the folder", error) from None
        try:
            self.recover()
            yield
        finally:
            self._lock.release()

    def recover(self) -> None:
        """Finish a commit a killed publish left (its journal), and remove staging folders nobody holds (call it
        under the lock)."""
        base = self.root.resolve()
        try:
            names = os.listdir(base)
            for name in names:
                if JOURNAL_TEMP.fullmatch(name) and _is_regular(base / name):
                    (base / name).unlink()
            if JOURNAL_FILE in names:
                journal = self._read_journal(base)
                logger.warning("%s: finishing the commit an interrupted publish left (%s)", base, journal["message"])
                self._apply(base, journal, verify=True)
            for name in os.listdir(base):
                folder = base / name
                if STAGING_NAME.fullmatch(name) and folder.is_dir() and not folder.is_symlink():
                    logger.info("%s: removing %s, left by an interrupted publish", base, name)
                    shutil.rmtree(folder)
        except OSError as error:
            raise self._failure("repairing an interrupted publish", error) from None

    def files(self) -> list[str]:
        return tree_files(self.root)

    def read(self, path: str) -> bytes | None:
        """The bytes of the repo file `path` (None if absent), refused when it is a link leading out of the folder,
        not a regular file, or over `MAX_MANIFEST_BYTES`."""
        if not os.path.lexists(self.root / path):
            return None
        file = contained(self.root, path, what=f"{path} in --local-dir")
        try:
            found = os.stat(file)
            if not stat.S_ISREG(found.st_mode):
                raise PublishError(f"{self.root / path} is not a regular file")
            if found.st_size > MAX_MANIFEST_BYTES:
                raise PublishError(f"{self.root / path} is over {MAX_MANIFEST_BYTES:,} bytes; it is not read")
            with open(file, "rb") as handle:
                data = handle.read(MAX_MANIFEST_BYTES + 1)
        except OSError as error:
            raise self._failure(f"reading {path}", error) from None
        return data

    def tags(self) -> set[str]:
        return set()

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A scratch folder inside the repo folder, so that a commit is a set of renames; removed afterwards unless a
        journal still needs it."""
        try:
            folder = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        except OSError as error:
            raise self._failure("creating a staging folder", error) from None
        try:
            yield folder
        finally:
            if not (self.root / JOURNAL_FILE).exists():
                shutil.rmtree(folder, ignore_errors=True)

    def commit(
        self, staging: Path, additions: Mapping[str, str], deletions: Mapping[str, str], message: str
    ) -> Commit:
        """Move the staged `additions` ({path: sha256}) into place and delete `deletions` ({path: the sha256 the
        manifest records}), through the journal (module docstring); the manifest moves last."""
        base = self.root.resolve()
        root_files = sorted((path for path in additions if "/" not in path), key=lambda path: path == MANIFEST_FILE)
        place = [*(path for path in additions if "/" in path), *root_files]
        for path in place:
            self._find_folder(base, path.split("/")[:-1])
        for path, digest in deletions.items():
            self._check_ours(base, path, digest)
        journal = {
            "format": JOURNAL_FORMAT,
            "staging": staging.name,
            "message": message,
            "place": [[path, additions[path]] for path in place],
            "delete": [[path, digest] for path, digest in deletions.items()],
        }
        try:
            write_atomic(base / JOURNAL_FILE, json.dumps(journal, indent=1).encode())
        except CacheWriteError as error:
            raise self._failure("writing the commit journal", error.__cause__ or OSError(str(error))) from None
        try:
            self._apply(base, journal, verify=False)
        except OSError as error:
            raise self._failure("committing (run the same publish again to finish it)", error) from None
        logger.info("%s: %s (%d files written, %d removed)", self.root, message, len(place), len(deletions))
        return Commit("local")

    def head(self) -> str:
        return "local"

    def tag(self, name: str, revision: str, message: str) -> None:
        """A folder has no tags: its releases are those its manifest records."""
        logger.info("%s: release %s recorded in the manifest", self.root, name)

    def _apply(self, base: Path, journal: dict[str, Any], verify: bool) -> None:
        """Move every file of `journal` into place and delete its stale ones; with `verify` (a journal found on
        disk), every staged file must lie inside the staging folder and have the recorded SHA-256 first."""
        staging = base / journal["staging"]
        if verify and staging.is_symlink():
            raise PublishError(f"{staging} is a link, not the staging folder llava-mixes made; remove it and "
                               f"{JOURNAL_FILE}, then publish again")  # fmt: skip
        for path, digest in journal["place"]:
            source, target = self._staged(staging, path, digest, verify), self._target(base, path)
            if source is not None:
                os.replace(source, target)
            elif not (_is_regular(target) and sha256_file(target) == digest):
                raise PublishError(
                    f"cannot finish the publish interrupted in {base}: {path} is neither staged in {staging.name} "
                    f"nor in place with its recorded bytes; remove {JOURNAL_FILE} and {staging.name}, then publish "
                    "again"
                )
        for path, digest in journal["delete"]:
            if verify:
                self._check_ours(base, path, digest)
            self._delete(base, path)
        (base / JOURNAL_FILE).unlink()
        shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _step(base: Path, folder: Path, part: str, shown: str) -> Path | None:
        """The existing folder `part` of `folder`, resolved and kept inside `base` (`contained`); None if absent."""
        candidate = folder / part
        if not os.path.lexists(candidate):
            return None
        resolved = contained(base, candidate, what=f"the folder {shown!r}")
        if not resolved.is_dir():
            raise PublishError(f"{candidate} is a file where the release needs a folder: move it away")
        return resolved

    @staticmethod
    def _staged(staging: Path, path: str, digest: str, verify: bool) -> Path | None:
        """The staged file `path` (None if it is not there), checked with `verify` to lie inside `staging` and to
        have the SHA-256 `digest`."""
        source = staging / path
        if not os.path.lexists(source):
            return None
        if verify:
            source = contained(staging, path, what=f"the staged file {path}")
            if not _is_regular(source) or sha256_file(source) != digest:
                raise PublishError(
                    f"{source} is not the file the interrupted publish staged (its SHA-256 differs); remove "
                    f"{JOURNAL_FILE} and {staging.name}, then publish again"
                )
        return source if _is_regular(source) else None

    def _find_folder(self, base: Path, parts: list[str]) -> Path | None:
        """The folder `parts` below `base`, every step kept inside it; None if a step is absent."""
        folder: Path | None = base
        for index, part in enumerate(parts):
            folder = self._step(base, folder, part, "/".join(parts[: index + 1])) if folder is not None else None
        return folder

    def _make_folder(self, base: Path, parts: list[str]) -> Path:
        """The folder `parts` below `base`, every existing step kept inside it and the missing ones created."""
        folder = base
        for index, part in enumerate(parts):
            found = self._step(base, folder, part, "/".join(parts[: index + 1]))
            if found is None:
                found = folder / part
                found.mkdir()
            folder = found
        return folder

    def _target(self, base: Path, path: str) -> Path:
        parts = path.split("/")
        target = self._make_folder(base, parts[:-1]) / parts[-1]
        if target.is_dir() and not target.is_symlink():
            raise PublishError(f"{target} is a folder where the release writes the file {path}: move it away")
        return target

    def _check_ours(self, base: Path, path: str, digest: str) -> None:
        """Refuse to delete `path` unless it is absent or a regular file with the recorded SHA-256 `digest`."""
        folder = self._find_folder(base, path.split("/")[:-1])
        target = None if folder is None else folder / path.split("/")[-1]
        if target is None or not os.path.lexists(target):
            return
        if not _is_regular(target) or sha256_file(target) != digest:
            raise PublishError(
                f"{target} is not the file llava-mixes wrote there (its bytes differ from the recorded ones, or it is "
                "a link), so it is not deleted; move it out of the folder, then publish again"
            )

    def _delete(self, base: Path, path: str) -> None:
        folder = self._find_folder(base, path.split("/")[:-1])
        if folder is None:
            return
        (folder / path.split("/")[-1]).unlink(missing_ok=True)
        while folder != base and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def _read_journal(self, base: Path) -> dict[str, Any]:
        path = base / JOURNAL_FILE
        try:
            if not _is_regular(path):
                raise ValueError("it is not a regular file")
            with open(path, "rb") as handle:
                journal = json.loads(handle.read(MAX_MANIFEST_BYTES + 1).decode("utf-8"))
            _check_journal(journal)
        except (ValueError, TypeError, KeyError, RecursionError, PathEscapeError) as error:
            raise PublishError(
                f"{path}, the journal of an interrupted publish, cannot be used ({str(error)[:200]}); remove it and "
                f"every {STAGING_PREFIX}* folder beside it, then publish again"
            ) from None
        return journal


def _check_journal(journal: Any) -> None:
    if not isinstance(journal, dict) or journal.get("format") != JOURNAL_FORMAT:
        raise ValueError(f"it is not a format-{JOURNAL_FORMAT} journal")
    if not isinstance(journal.get("staging"), str) or not STAGING_NAME.fullmatch(journal["staging"]):
        raise ValueError("it names no staging folder")
    if not isinstance(journal.get("message"), str):
        raise ValueError("it has no message")
    for field in ("place", "delete"):
        if not isinstance(journal.get(field), list):
            raise ValueError(f"its {field} is not a list")
        for item in journal[field]:
            if not isinstance(item, list) or len(item) != 2:
                raise ValueError(f"its {field} holds {str(item)[:80]!r}")
            repo_path(item[0], f"a file to {field}")
            if not isinstance(item[1], str) or not SHA256_PATTERN.fullmatch(item[1]):
                raise ValueError(f"its {field} has no SHA-256 for {item[0]!r}")
