"""Exceptions raised by llava_mixes; each message says what is wrong and what to do about it (`choices` names the
allowed values)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager


class LlavaMixesError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(LlavaMixesError, ValueError):
    """A configuration value is not allowed; the message names the value and the allowed ones."""


class MissingDataError(LlavaMixesError, FileNotFoundError):
    """A data directory or annotation file is absent; the message says what to download and where."""


class MalformedSourceError(LlavaMixesError, ValueError):
    """An annotation file cannot be parsed; the message names the file and the position."""


class EmbedderUnavailableError(LlavaMixesError, RuntimeError):
    """The embedding model cannot be loaded; the message names the ways out."""


class RecordRejected(LlavaMixesError):
    """One record cannot be normalised. Carries a reason from `schema.REJECT_REASONS` and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BadRecordError(LlavaMixesError, ValueError):
    """Raised under `on_bad_records="error"` for the first rejected record."""


class PublishError(LlavaMixesError):
    """A publish was refused or the Hub failed it; the message says why and what to do instead."""


class MissingExtraError(LlavaMixesError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


class CacheWriteError(LlavaMixesError):
    """A file could not be written (disk full, read-only or unwritable folder); the message names the folder."""


class BadEmbeddingError(LlavaMixesError, ValueError):
    """Some vectors cannot be compared (missing, not finite, or of zero length); the message names which."""

    def __init__(self, message: str, positions: list[int] | None = None) -> None:
        super().__init__(message)
        self.positions = positions or []


class PathEscapeError(LlavaMixesError, ValueError):
    """A path taken from untrusted input leads outside the folder it must stay in, or cannot be resolved;
    the message names the path and the folder."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


MAX_CHOICES_SHOWN = 12


def choices(allowed: Iterable[object]) -> str:
    """The allowed values an error message names, as a list; past `MAX_CHOICES_SHOWN` the first ones and how many
    more (configs number hundreds with the OneVision subsets), so that the message stays short."""
    values = list(allowed)
    if len(values) <= MAX_CHOICES_SHOWN:
        return str(values)
    rest = len(values) - MAX_CHOICES_SHOWN
    return f"{values[:MAX_CHOICES_SHOWN]} and {rest} more (`llava-mixes list` shows them all)"


_flags: dict[str, str] = {}
"""The command line's flag for each setting it has one for, while `command_line_spelling` is in effect."""


def setting(name: str, value: str | None = None, *, placeholder: str | None = None) -> str:
    """A setting named in an error message, spelled for whoever reads it: as a Python caller writes it
    (`embedder='thumbnail'`, `embedder=FOLDER`), or, inside `command_line_spelling` and where the setting has a
    flag, as the command line takes it (`--embedder thumbnail`, `--embedder FOLDER`). No value: the name alone."""
    flag = _flags.get(name)
    if value is None and placeholder is None:
        return flag or name
    if flag is not None:
        text = str(value)
        # A value with a line break or another character that does not print is escaped: the error stays one line.
        return f"{flag} {placeholder or (shlex.quote(text) if text.isprintable() else repr(text))}"
    return f"{name}={placeholder or repr(value)}"


@contextmanager
def command_line_spelling(flags: Mapping[str, str]) -> Iterator[None]:
    """Spell the settings that `flags` maps (setting name -> command-line flag) as flags in every error message
    made meanwhile, in any thread of this process (the command line runs one command per process)."""
    previous = dict(_flags)
    _flags.clear()
    _flags.update(flags)
    try:
        yield
    finally:
        _flags.clear()
        _flags.update(previous)


def unknown_choice(
    what: str, value: object, allowed: Iterable[object], shown: Callable[[object], str] = repr
) -> ConfigError:
    """The error for `value` where the setting `what` takes one of `allowed`: "unknown WHAT value 'x'; choose one
    of [...]" for a name that is none of them (a typo, most often), "WHAT=x is not allowed; ..." for a value that is
    no name at all. `shown` writes the value (e.g. with escapes, for a value from an untrusted file)."""
    listed = f"choose one of {choices(allowed)}"
    if isinstance(value, str):
        return ConfigError(f"unknown {setting(what)} value {shown(value)}; {listed}")
    return ConfigError(f"{what}={shown(value)} is not allowed; {listed}")
