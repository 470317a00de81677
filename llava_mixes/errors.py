"""Exceptions raised by llava_mixes; each message says what is wrong and what to do about it (`choices` names the
allowed values)."""

from __future__ import annotations

from collections.abc import Iterable


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


def choices(allowed: Iterable[str]) -> str:
    """The allowed values an error message names, as a list; past `MAX_CHOICES_SHOWN` the first ones and how many
    more (configs number hundreds with the OneVision subsets), so that the message stays short."""
    values = list(allowed)
    if len(values) <= MAX_CHOICES_SHOWN:
        return str(values)
    rest = len(values) - MAX_CHOICES_SHOWN
    return f"{values[:MAX_CHOICES_SHOWN]} and {rest} more (`llava-mixes list` shows them all)"
