"""The content digest of an embedder's weight file or checkpoint folder, read only when `stat` cannot vouch for it.

A file's SHA-256 is remembered with the `stat` it was taken at (device, inode, size, mtime and ctime in ns), in
this process and under the cache root (`<cache root>/file_digests/`, one small JSON per file). While all five are
unchanged the file is not read again: a rewrite moves the ctime even when the mtime is put back, and a file
replaced by a rename has another inode. Any change reads the file again. The remembered digests are facts about
bytes; a cache root that cannot be written only means reading the weights again next time.

A checkpoint folder's digest covers every file below it (symbolic links to files followed, as in an HF cache
snapshot; hidden files and Markdown files left out): their relative paths and contents. So a weight file
replaced, added, removed or renamed changes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from llava_mixes.errors import CacheWriteError
from llava_mixes.store import default_cache_root, write_atomic

logger = logging.getLogger(__name__)

DIGESTS_DIR = "file_digests"
_remembered: dict[str, tuple[tuple[int, ...], str]] = {}


def _stat_key(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(resolved: str) -> Path:
    return default_cache_root() / DIGESTS_DIR / f"{hashlib.sha256(resolved.encode()).hexdigest()[:40]}.json"


def _recalled(resolved: str, key: tuple[int, ...]) -> str | None:
    known = _remembered.get(resolved)
    if known is not None and known[0] == key:
        return known[1]
    try:
        data = json.loads(_record_path(resolved).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("path") != resolved or data.get("stat") != list(key):
        return None
    sha = data.get("sha256")
    return sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) else None


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at `path` (symbolic links followed), read only when its stat moved (see above)."""
    resolved = str(Path(path).expanduser().resolve())
    key = _stat_key(os.stat(resolved))
    sha = _recalled(resolved, key)
    if sha is None:
        sha = _sha256(Path(resolved))
        after = _stat_key(os.stat(resolved))
        if after != key:  # written while it was read: remember nothing
            return sha
        try:
            write_atomic(
                _record_path(resolved), json.dumps({"path": resolved, "stat": list(key), "sha256": sha}).encode()
            )
        except CacheWriteError as error:
            logger.info("the digest of %s is not remembered: %s", resolved, error)
    _remembered[resolved] = (key, sha)
    return sha


def _counted(name: str) -> bool:
    return not name.startswith(".") and not name.lower().endswith(".md")


def folder_digest(folder: str | os.PathLike) -> str:
    """The SHA-256 of a checkpoint folder: every counted file's relative path and content digest (see above)."""
    root = Path(folder).expanduser().resolve()
    digest = hashlib.sha256()
    for parent, dirs, names in os.walk(root):
        dirs[:] = sorted(name for name in dirs if _counted(name))
        for name in sorted(names):
            path = Path(parent) / name
            if _counted(name) and path.is_file():
                digest.update(json.dumps([path.relative_to(root).as_posix(), file_digest(path)]).encode())
    return digest.hexdigest()
