"""The base of every source builder: what a source module declares, and what its one function returns.

A source module in `builders/` subclasses `Source`, sets the class attributes below and implements
`normalise(record)`, which turns one raw record into a `SourceRow` or raises `RecordRejected`. Everything
else (reading, ids, image resolution and checks, rejection bookkeeping) is shared and lives in
`llava_mixes.normalise`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llava_mixes import readers
from llava_mixes.errors import MissingDataError


@dataclass(frozen=True)
class SourceRow:
    """One record in the common schema, before ids, image checks and file resolution are added."""

    source_id: str | None
    conversations: list[dict[str, str]]
    image_path: str | None
    task: str | None
    language: str | None = None


class Source:
    """One instruction set. Subclasses set every class attribute without a default and `normalise`."""

    name: ClassVar[str]
    """Value of the `source` column, e.g. `llava_v1_5_mix665k`."""
    config_name: ClassVar[str]
    """Prefix of this source's configs, e.g. `mix665k`."""
    annotation_files: ClassVar[tuple[str, ...]]
    """Annotation files, relative to `data_dir`, read in this order."""
    file_format: ClassVar[str] = "json"
    """`json` (one array of records) or `jsonl` (one record per line)."""
    language: ClassVar[str] = "en"
    image_prefixes: ClassVar[tuple[str, ...]] = ("",)
    """Folders under `data_dir` in which image paths are looked up, in order."""
    description: ClassVar[str]
    homepage: ClassVar[str]
    license: ClassVar[str]
    citation: ClassVar[str]
    download_hint: ClassVar[str]
    """What to download and where to put it, shown when files are missing."""

    def normalise(self, record: Any) -> SourceRow:
        """Turn one raw record into a `SourceRow`; raise `RecordRejected` for a bad one."""
        raise NotImplementedError

    def image_group(self, image_path: str) -> str:
        """The dedup/statistics group of an image path: its first folder, or `vg/<folder>` for VG."""
        parts = image_path.replace("\\", "/").lstrip("./").split("/")
        if parts[0] == "vg" and len(parts) > 2:
            return parts[1]
        return parts[0]

    def locate_files(self, data_dir: Path) -> list[Path]:
        """The annotation files under `data_dir`; raises one clear error naming every missing file."""
        paths = [data_dir / name for name in self.annotation_files]
        missing = [path for path in paths if not path.is_file()]
        if missing:
            listed = ", ".join(str(path) for path in missing)
            raise MissingDataError(f"{self.name}: missing {listed}. {self.download_hint}")
        return paths

    def iter_records(self, paths: list[Path], on_bytes: Any = None) -> Iterator[tuple[int, Any]]:
        """Yield `(row_index, raw_record)` over every annotation file, numbering rows across files."""
        offset = 0
        read = readers.iter_json_lines if self.file_format == "jsonl" else readers.iter_json_array
        for path in paths:
            count = 0
            for index, record in read(path, on_bytes):
                yield offset + index, record
                count = index + 1
            offset += count
