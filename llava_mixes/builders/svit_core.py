"""SVIT core in its own format: `conversation.json`, `complex_reasoning.json`, `referring_qa.json` and
`detail_description.json` (BAAI/SVIT, `data/`).

Each file is a JSON array of `{"image_id": <VG id>, "conversations": [block, …]}`; a block is
`{"topic": …, "content": [{"from": "user"|"gpt", "value": …}, …]}` (`topic` in `conversation.json` only).
This shape comes from two independent converters, not from the authors. One block becomes one row: its
`content` list, flattened, is the row's turns (`user` becomes `human`), and `<image>` is added to the
first question (the originals have none). The task is the file's: `conversation`, `complex_reasoning`,
`referring_qa`, `detail_description`. Referring answers keep SVIT's `<st>phrase<ed> [x1, y1, x2, y2]`
markup verbatim; those boxes are relative to the original image, not padded to a square as in
`SVIT_mix_665K.json`. The image is `<image_id>.jpg` in `vg/VG_100K`, else in `vg/VG_100K_2`; `image_path`
is where it was found (an image in neither is rejected and counted under `VG_100K`, the first folder looked
in). A block's `topic` is not kept. An image record that is not of this shape is one rejected row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llava_mixes import schema
from llava_mixes.builders.svit_mix665k import SvitMix665k
from llava_mixes.errors import RecordRejected
from llava_mixes.sources import readers
from llava_mixes.sources.base import Source, SourceRow
from llava_mixes.sources.conversation import normalise_turns

FILE_TASKS = {
    "conversation.json": "conversation",
    "complex_reasoning.json": "complex_reasoning",
    "referring_qa.json": "referring_qa",
    "detail_description.json": "detail_description",
}
VG_FOLDERS = ("vg/VG_100K", "vg/VG_100K_2")
BLOCK = "block"


def _vg_name(image_id: Any) -> str:
    if isinstance(image_id, float) and image_id.is_integer():
        image_id = int(image_id)
    if isinstance(image_id, bool) or not isinstance(image_id, (int, str)) or not str(image_id).isdigit():
        raise RecordRejected(schema.MALFORMED_RECORD, f"image_id is {image_id!r}; expected a Visual Genome id")
    return f"{int(image_id)}.jpg"


class SvitCore(Source):
    name = "svit_core"
    config_name = "svit-core"
    annotation_files = tuple(FILE_TASKS)
    annotation_dirs = ("", "SVIT/data")
    hub_repo = "BAAI/SVIT"
    hub_files = tuple(f"data/{name}" for name in FILE_TASKS)
    description = "SVIT core: 4.2M GPT-4 generated conversations, reasoning, referring QAs and descriptions on VG."
    homepage = SvitMix665k.homepage
    license = SvitMix665k.license
    citation = SvitMix665k.citation
    download_hint = (
        "Accept the terms of the gated Hub dataset BAAI/SVIT and download its data/ files (conversation.json, "
        "complex_reasoning.json, referring_qa.json, detail_description.json) into data_dir or data_dir/SVIT/data, "
        "and Visual Genome's images into data_dir/vg/VG_100K and data_dir/vg/VG_100K_2."
    )

    def __init__(self) -> None:
        self._vg_paths: dict[int, tuple[str, tuple[str, ...]]] = {}
        """The image path and its alternatives, by integer image id (ids repeat across blocks and files)."""

    def iter_records(
        self, paths: list[Path], on_bytes: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Yield one unit per block of an image record (its id, image id, image, task and block), or the record
        itself when it has no list of blocks (see the module docstring), numbered across the four files."""
        index = 0
        for path in paths:
            task = FILE_TASKS[path.name]
            for _, record in readers.reader_for(path)(path, on_bytes):
                blocks = record.get("conversations") if isinstance(record, dict) else None
                if not isinstance(blocks, list) or not blocks:
                    yield index, record
                    index += 1
                    continue
                image_id, image = record.get("image_id"), record.get("image")
                for number, block in enumerate(blocks):
                    unit_id = f"{task}/{image_id}/{number}"
                    yield index, {"id": unit_id, "image_id": image_id, "image": image, "task": task, BLOCK: block}
                    index += 1

    def raw_source_id(self, record: Any) -> str | None:
        if not isinstance(record, dict):
            return None
        value = record.get("id", record.get("image_id"))
        return None if value is None else str(value)

    def raw_image_path(self, record: Any) -> str | None:
        if not isinstance(record, dict):
            return None
        if isinstance(record.get("image"), str):
            return record["image"]
        try:
            return f"{VG_FOLDERS[0]}/{_vg_name(record.get('image_id'))}"
        except RecordRejected:
            return None

    def normalise(self, record: Any) -> SourceRow:
        if not isinstance(record, dict):
            raise RecordRejected(schema.MALFORMED_RECORD, f"record is {type(record).__name__}, not an object")
        if BLOCK not in record:
            blocks = record.get("conversations")
            if isinstance(blocks, list):
                raise RecordRejected(schema.EMPTY_CONVERSATION, f"image {record.get('image_id')!r} has no blocks")
            raise RecordRejected(schema.MALFORMED_RECORD, f"no list of conversation blocks; keys are {sorted(record)}")
        block = record[BLOCK]
        if not isinstance(block, dict) or "content" not in block:
            raise RecordRejected(schema.MALFORMED_RECORD, f"block {record['id']} has no 'content' list of turns")
        turns = normalise_turns(block["content"], has_image=True)
        written = record.get("image")
        if isinstance(written, str) and written.strip():
            return SourceRow(record["id"], turns, written, record["task"])
        image_id = record["image_id"]
        paths = self._vg_paths.get(image_id) if type(image_id) is int else None
        if paths is None:
            name = _vg_name(image_id)
            paths = (f"{VG_FOLDERS[0]}/{name}", tuple([f"{folder}/{name}" for folder in VG_FOLDERS[1:]]))
            if type(image_id) is int:
                self._vg_paths[image_id] = paths
        return SourceRow(record["id"], turns, paths[0], record["task"], image_alternatives=paths[1])
