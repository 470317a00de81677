"""Paths that come from untrusted input, kept inside the folders the user named.

Every reader of an untrusted input (a published copy, a recipe file, a benchmark folder, a question file, an
annotation file, a manifest) goes through this module for the paths it finds there:

- `contained(root, written)` resolves a path as written (relative to `root`, or absolute) with every symbolic
  link followed, and refuses it unless the result lies inside `root` (itself resolved). A link inside `root`
  that leads inside `root` is fine; one that leads out, dangles or loops is refused.
- `walk_files(root)` lists the regular files under `root` in a stable order, following only links that stay
  inside it, and names every entry it left out and why.
- `check_file_name(name)` refuses a name that is about to become part of a file name (a recipe's name, a
  config's name) unless it is one plain path component.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llava_mixes.errors import PathEscapeError

FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=-]{0,199}$")
"""A name that may become one path component: no separator, no leading dot, no `..`, at most 200 characters."""


@dataclass(frozen=True)
class Skipped:
    """An entry `walk_files` left out: its path and why."""

    path: Path
    reason: str


def _shown(name: object, limit: int = 120) -> str:
    """`repr(name)`, cut to `limit` characters: a message never grows with the untrusted input it names."""
    text = repr(name)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _resolve(path: Path) -> Path:
    try:
        return path.resolve(strict=True)
    except RuntimeError as error:  # Python < 3.13 reports a symlink loop this way
        raise OSError(errno.ELOOP, "symbolic link loop", str(path)) from error


def is_inside(root: Path, path: Path) -> bool:
    """Whether the resolved `path` is `root` or lies below it (both already resolved)."""
    return path == root or root in path.parents


def contained(root: str | os.PathLike, written: str | os.PathLike, what: str = "path") -> Path:
    """`written` resolved against `root`, every symbolic link followed; raises `PathEscapeError` naming
    `what` when the result lies outside `root`, or when it does not exist, dangles or loops."""
    base = _resolve(Path(root))
    candidate = base / os.fspath(written)
    try:
        resolved = _resolve(candidate)
    except FileNotFoundError as error:
        raise PathEscapeError(f"{what} {_shown(os.fspath(written))} not found under {base}", str(written)) from error
    except (OSError, ValueError) as error:  # ValueError: a name holding a NUL byte
        reason = os.strerror(error.errno) if getattr(error, "errno", None) else str(error)
        raise PathEscapeError(
            f"{what} {_shown(os.fspath(written))} cannot be resolved: {reason}", str(written)
        ) from error
    if not is_inside(base, resolved):
        raise PathEscapeError(
            f"{what} {_shown(os.fspath(written))} leads outside {base} (to {resolved}); only files inside it are read",
            str(written),
        )
    return resolved


def walk_files(
    root: str | os.PathLike,
    keep: Callable[[str], bool] = lambda name: True,
    on_skip: Callable[[Skipped], None] | None = None,
) -> Iterator[Path]:
    """The regular files under `root` whose name `keep` accepts, sorted, recursively, as resolved paths.
    A symbolic link is followed only where it leads inside `root`; a link that leads out, dangles or loops,
    and anything that is neither a file nor a folder, is passed to `on_skip` instead. Each file is listed
    once, however many links lead to it."""
    base = _resolve(Path(root))
    seen_dirs: set[Path] = {base}
    seen_files: set[Path] = set()
    pending = [base]
    while pending:
        folder = pending.pop()
        try:
            names = sorted(os.listdir(folder))
        except OSError as error:
            _skip(on_skip, folder, os.strerror(error.errno or 0))
            continue
        subfolders = []
        for name in names:
            entry = folder / name
            try:
                target = _resolve(entry)
                mode = os.stat(target).st_mode
            except FileNotFoundError:
                _skip(on_skip, entry, "dangling symbolic link")
                continue
            except OSError as error:
                _skip(on_skip, entry, os.strerror(error.errno) if error.errno else str(error))
                continue
            if not is_inside(base, target):
                _skip(on_skip, entry, f"leads outside {base}")
            elif stat.S_ISDIR(mode):
                if target not in seen_dirs:
                    seen_dirs.add(target)
                    subfolders.append(target)
            elif not stat.S_ISREG(mode):
                _skip(on_skip, entry, "not a regular file")
            elif keep(name) and target not in seen_files:
                seen_files.add(target)
                yield target
        pending.extend(reversed(subfolders))


def _skip(on_skip: Callable[[Skipped], None] | None, path: Path, reason: str) -> None:
    if on_skip is not None:
        on_skip(Skipped(path, reason))


def check_file_name(name: object, what: str) -> str:
    """`name` if it can be one path component (see `FILE_NAME`); else `PathEscapeError` naming `what`."""
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or ".." in name:
        raise PathEscapeError(
            f"{what} {_shown(name)} is not allowed: it becomes a file name, so it must be 1-200 letters, digits or "
            "'_.+=-', start with a letter or digit, and hold no '..'",
            str(name),
        )
    return name
