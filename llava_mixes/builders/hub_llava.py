"""The shared reading of lmms-lab's Hub releases in LLaVA's format with the pictures inside (LLaVA-NeXT-Data,
LLaVA-OneVision-Data): Parquet rows `id`, `conversations` (`from`/`value`), `data_source` and `image` (the
`datasets` Image struct `{bytes, path}`), downloaded by the user with `hf download`, never fetched implicitly.

A row's image group is its `data_source` (the sub-dataset it was drawn from), else the source's fallback group;
its task comes from its prompt (see `task_of`).
A null `image` makes a text-only row. A row holding several pictures (an `images` list of more than one) is
rejected with `multiple_images`: the schema has one picture per row, and taking the first would be wrong.
A picture named by a path without bytes is rejected (`missing_image`): these releases carry their pictures
inside, and a path in the file is never looked up on disk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from llava_mixes import schema
from llava_mixes.builders.mix665k import PROMPT_TASKS
from llava_mixes.errors import MissingDataError, RecordRejected
from llava_mixes.paths import contained
from llava_mixes.sources import json_guard
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.conversation import first_human_text, normalise_turns
from llava_mixes.sources.llava_format import source_id_of

MAX_ROW_BYTES = json_guard.MAX_RECORD_BYTES
"""Most bytes of text, and separately of picture, one row may hold (the JSON readers' record limit)."""
MAX_GROUP_CHARS = 120
"""Longest `data_source` kept as an image group; a longer one is no sub-dataset name (the row is rejected)."""
_GROUP = re.compile(r"[^\x00-\x1f\x7f]+")
_STORED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,199}")


def stored_name(path: Any) -> str | None:
    """The file name a picture was stored under, when it is a plain name (its last path part); else None."""
    if not isinstance(path, str):
        return None
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name if _STORED_NAME.fullmatch(name) and ".." not in name else None


def picture(record: Mapping[str, Any]) -> tuple[bytes | None, str | None]:
    """The record's one picture as `(bytes, stored name)`; `(None, None)` for a text-only row."""
    value = record.get("image")
    images = record.get("images")
    if images is not None:
        if not isinstance(images, list):
            raise RecordRejected(schema.MALFORMED_RECORD, f"images is {type(images).__name__}, not a list")
        present = [item for item in images if item is not None]
        if len(present) > 1:
            raise RecordRejected(
                schema.MULTIPLE_IMAGES, f"the row holds {len(present)} pictures; the schema has one per row"
            )
        if present:
            if value is not None:
                raise RecordRejected(schema.MULTIPLE_IMAGES, "the row holds a picture in both image and images")
            value = present[0]
    if value is None:
        return None, None
    if isinstance(value, (bytes, bytearray)):
        data, name = bytes(value), None
    elif isinstance(value, Mapping):
        data, name = value.get("bytes"), value.get("path")
        if data is None and name is None:
            return None, None
        if data is not None and not isinstance(data, (bytes, bytearray)):
            raise RecordRejected(schema.MALFORMED_RECORD, f"image bytes are {type(data).__name__}, not bytes")
        if data is None:
            raise RecordRejected(
                schema.MISSING_IMAGE, f"image names {name!r:.80} without its bytes; this release carries its pictures"
            )
        data = bytes(data)
    else:
        raise RecordRejected(
            schema.MALFORMED_RECORD, f"image is {type(value).__name__}; expected the Image struct {{bytes, path}}"
        )
    if not data:
        raise RecordRejected(schema.UNDECODABLE_IMAGE, "image bytes are empty")
    if len(data) > MAX_ROW_BYTES:
        raise RecordRejected(schema.MALFORMED_RECORD, f"the picture takes {len(data):,} bytes, over {MAX_ROW_BYTES:,}")
    return data, stored_name(name)


def group_of(record: Mapping[str, Any], fallback: str) -> str:
    """The row's image group: its `data_source`, else `fallback`."""
    value = record.get("data_source")
    if value is None or (isinstance(value, str) and not value.strip()):
        return fallback
    if not isinstance(value, str):
        raise RecordRejected(schema.MALFORMED_RECORD, f"data_source is {type(value).__name__}, not a string")
    value = value.strip()
    if len(value) > MAX_GROUP_CHARS or not _GROUP.fullmatch(value):
        raise RecordRejected(
            schema.MALFORMED_RECORD,
            f"data_source {value!r:.80} is no sub-dataset name (control characters or over {MAX_GROUP_CHARS} chars)",
        )
    return value


def hub_row(record: Any, fallback_group: str) -> SourceRow:
    """One Hub-release row in the common schema (see the module docstring)."""
    if not isinstance(record, Mapping):
        raise RecordRejected(schema.MALFORMED_RECORD, f"record is {type(record).__name__}, not an object")
    source_id = source_id_of(dict(record))
    group = group_of(record, fallback_group)
    data, name = picture(record)
    if "conversations" not in record:
        raise RecordRejected(schema.MALFORMED_RECORD, f"no 'conversations' column; columns are {sorted(record)}")
    conversations = record["conversations"]
    if isinstance(conversations, list):
        values = [turn.get("value") for turn in conversations if isinstance(turn, Mapping)]
        size = sum(len(value) for value in values if isinstance(value, str))
        if size > MAX_ROW_BYTES:
            raise RecordRejected(schema.MALFORMED_RECORD, f"the conversation takes {size:,} characters, over the cap")
    turns = normalise_turns(conversations, has_image=data is not None)
    return SourceRow(source_id, turns, name, task_of(data is not None, turns), image_bytes=data, image_group=group)


def task_of(has_image: bool, turns: list[dict[str, str]]) -> str:
    """The row's task: `text` without a picture; else the 665K mix's prompt rules (`vqa`, `multiple_choice`, …);
    else `conversation` for several rounds and `instruction` for one."""
    if not has_image:
        return "text"
    question = first_human_text(turns)
    for marker, task in PROMPT_TASKS:
        if marker in question:
            return task
    return "conversation" if len(turns) > 2 else "instruction"


def parquet_files(folder: Path) -> list[Path]:
    """The `.parquet` files under `folder` (recursively, hidden parts skipped), in path order, as they lie:
    a symbolic link among them is refused by `paths.contained` when it leads out of `folder`."""
    found = []
    for path in sorted(folder.rglob("*.parquet")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        found.append(contained(folder, relative, "Parquet file"))
    return found


class HubParquetSource(Source):
    """A release downloaded from the Hub as Parquet with the pictures inside (see the module docstring)."""

    annotation_files = ()
    release_dir: ClassVar[str]
    """The folder under `data_dir` that `hf download … --local-dir` filled."""
    data_folders: ClassVar[tuple[str, ...]]
    """The folders under `release_dir` whose Parquet files are read, in order; every one must hold some."""
    batch_rows = 256

    def locate_files(self, data_dir: Path, in_recipe: bool = False) -> list[Path]:
        """The Parquet files of every folder of `data_folders`; `MissingDataError` naming the folders without any,
        and what to download. Never fetched: the release is tens of gigabytes."""
        release = data_dir / self.release_dir
        files: list[Path] = []
        empty: list[str] = []
        for folder in self.data_folders:
            where = release / folder if folder else release
            found = parquet_files(where) if where.is_dir() else []
            if not found:
                empty.append(str(where))
            files.extend(found)
        if empty:
            shown = "; ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            raise MissingDataError(f"{self.name}: no Parquet files in {shown}. {self.download_hint}")
        return files

    def raw_image_path(self, record: Any) -> str | None:
        value = record.get("image") if isinstance(record, Mapping) else None
        return stored_name(value.get("path")) if isinstance(value, Mapping) else None

    def group_of_raw(self, record: Any) -> str | None:
        """The image group of a raw record rejected before it became a row, if it has a picture."""
        if not isinstance(record, Mapping) or (record.get("image") is None and not record.get("images")):
            return None
        try:
            return group_of(record, self.single_image_group or self.name)
        except RecordRejected:
            return self.single_image_group

    def normalise(self, record: Any) -> SourceRow:
        return hub_row(record, self.single_image_group or self.name)
