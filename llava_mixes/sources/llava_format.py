"""Records in LLaVA's own format (`id`, optional `image`, `conversations` of `{from, value}`), as used
by the 558K, 665K, ShareGPT4V and SVIT mixes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llava_mixes import schema
from llava_mixes.errors import RecordRejected
from llava_mixes.sources.base import SourceRow
from llava_mixes.sources.conversation import normalise_turns

TaskRule = Callable[[str | None, list[dict[str, str]]], str | None]


def source_id_of(record: dict[str, Any]) -> str | None:
    """The record's id as a string (665K ids mix ints and strings); None when it has none."""
    raw = record.get("id")
    if raw is None:
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise RecordRejected(schema.MALFORMED_RECORD, f"id is {type(raw).__name__}, not a string or integer")
    return str(raw)


def image_path_of(record: dict[str, Any]) -> str | None:
    """The record's single image path, or None for a text-only record."""
    image = record.get("image")
    if image is None:
        return None
    if not isinstance(image, str) or not image.strip():
        raise RecordRejected(schema.MALFORMED_RECORD, f"image is {image!r}; expected one non-empty path string")
    return image


def llava_row(record: Any, task_rule: TaskRule) -> SourceRow:
    """Normalise one LLaVA-format record; `task_rule(image_path, turns)` names its task."""
    if not isinstance(record, dict):
        raise RecordRejected(schema.MALFORMED_RECORD, f"record is {type(record).__name__}, not an object")
    source_id = source_id_of(record)
    image_path = image_path_of(record)
    if "conversations" not in record:
        raise RecordRejected(schema.MALFORMED_RECORD, f"no 'conversations' key; keys are {sorted(record)}")
    turns = normalise_turns(record["conversations"], has_image=image_path is not None)
    return SourceRow(source_id, turns, image_path, task_rule(image_path, turns))
