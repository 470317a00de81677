"""The base of every source builder: what a source module declares, and what its one function returns.

A source module in `builders/` subclasses `Source`, sets the class attributes below and implements
`normalise(record)`, which turns one raw record into a `SourceRow` or raises `RecordRejected`. Everything
else (finding or fetching the annotation files, reading, ids, image resolution and checks, rejection
bookkeeping) is shared and lives here and in `llava_mixes.sources.normalise`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import datasets

from llava_mixes.errors import MissingDataError, setting
from llava_mixes.sources import fetch as hub
from llava_mixes.sources import readers
from llava_mixes.sources.data_files import read_instead, similar_files

ABOVE_LEVELS = 2
"""How many folders above a `data_dir` that lacks an annotation file are looked in for it (`D/coco` for `D`)."""


@dataclass(slots=True)
class SourceRow:
    """One record in the common schema, before ids, image checks and file resolution are added (a plain
    slotted dataclass, not a frozen one: one is made per row, and a frozen one takes twice as long to make).

    An image is named by `image_path` (a path relative to `data_dir`; `image_alternatives` are other
    paths that name the same picture, tried in order when the first has no file, and the row keeps the
    one found) or carried as `image_bytes` (with `image_path` the name the release stored it under, if any).
    """

    source_id: str | None
    conversations: list[dict[str, str]]
    image_path: str | None
    task: str | None
    language: str | None = None
    image_alternatives: tuple[str, ...] = ()
    image_bytes: bytes | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Values of the source's `extra_features` columns."""
    image_group: str | None = None
    """The row's own image group (e.g. its `data_source` in a Hub release); None: the source's
    `image_group(image_path)`."""


def _printable(path: Path) -> str:
    """`path` as an error shows it: as it is, or quoted with escapes where it holds a line break or another
    character that does not print (the error stays one line)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


class Source:
    """One instruction set. Subclasses set every class attribute without a default and `normalise`."""

    name: ClassVar[str]
    """Value of the `source` column, e.g. `llava_v1_5_mix665k`."""
    config_name: ClassVar[str]
    """Prefix of this source's configs, e.g. `mix665k`."""
    family: ClassVar[str | None] = None
    """For one subset of a larger release: the config name of the whole release (`llava-mixes list` shows such
    subsets on one line, the demo builds the whole release only)."""
    annotation_files: ClassVar[tuple[str, ...]]
    """Annotation files, read in this order; `.jsonl` is JSON Lines, `.parquet` Parquet, anything else a JSON array."""
    annotation_dirs: ClassVar[tuple[str, ...]] = ("",)
    """Folders under `data_dir` in which the annotation files are looked for, in order."""
    hub_repo: ClassVar[str | None] = None
    """The Hub dataset repo an absent annotation file is fetched from when online; None: never fetched."""
    hub_files: ClassVar[tuple[str, ...] | None] = None
    """Each annotation file's path in `hub_repo`; None: the same as `annotation_files`."""
    language: ClassVar[str] = "en"
    image_prefixes: ClassVar[tuple[str, ...]] = ("",)
    """Folders under `data_dir` in which image paths are looked up, in order."""
    single_image_group: ClassVar[str | None] = None
    """The one `image_group` of every image, for a source whose folders say nothing about its images."""
    extra_features: ClassVar[dict[str, datasets.Value]] = {}
    """Columns this source adds to the row schema (defined in `schema`); null in other sources' rows."""
    batch_rows: ClassVar[int] = 4096
    """Records normalised per batch (smaller where records carry image bytes)."""
    description: ClassVar[str]
    homepage: ClassVar[str]
    license: ClassVar[str]
    commercial_use: ClassVar[bool] = True
    """False where the licence of the source's text forbids commercial use (the card says so)."""
    citation: ClassVar[str]
    download_hint: ClassVar[str]
    """What to download and where to put it, shown when files are missing."""

    def normalise(self, record: Any) -> SourceRow:
        """Turn one raw record into a `SourceRow`; raise `RecordRejected` for a bad one."""
        raise NotImplementedError

    def example_record(self, number: int, image: str) -> Any:
        """Raw record `number` in this source's own format, whose picture is `image` (relative to the first of
        `image_prefixes`), normalised without rejection: what the demo playground writes for a source that has no
        hand-written fixture (see `docs/new-instruction-set.md`)."""
        raise NotImplementedError(f"{type(self).__name__} has no example_record, so the playground cannot write it")

    def raw_source_id(self, record: Any) -> str | None:
        """The id of a raw record that was rejected before it became a `SourceRow`, if it names one."""
        value = record.get("id") if isinstance(record, dict) else None
        return None if value is None else str(value)

    def raw_image_path(self, record: Any) -> str | None:
        """The image path of a raw record that was rejected before it became a `SourceRow`, if it names one."""
        value = record.get("image") if isinstance(record, dict) else None
        return value if isinstance(value, str) else None

    def group_of_raw(self, record: Any) -> str | None:
        """The image group of a raw record rejected before it became a row, for a source whose rows carry their own
        group (`SourceRow.image_group`); None: derived from the record's image path."""
        return None

    def image_group(self, image_path: str) -> str:
        """The dedup/statistics group of an image path: its first folder, or `vg/<folder>` for VG."""
        if self.single_image_group is not None:
            return self.single_image_group
        parts = image_path.replace("\\", "/").lstrip("./").split("/")
        if parts[0] == "vg" and len(parts) > 2:
            return parts[1]
        return parts[0]

    def _local(self, data_dir: Path, name: str) -> Path | None:
        for folder in self.annotation_dirs:
            path = data_dir / folder / name if folder else data_dir / name
            if path.is_file():
                return path
        return None

    def locate_files(self, data_dir: Path, in_recipe: bool = False) -> list[Path]:
        """The annotation files: local ones under `data_dir`, absent ones fetched from `hub_repo`.

        Raises one clear error naming every file that is neither here nor fetchable, and what to download; a
        similarly named file present is suggested with the way to read it that works for a plain build, or for a
        recipe's source (`in_recipe`: the recipe key and the per-source flag, see `data_files.read_instead`).
        """
        hub_names = self.hub_files or self.annotation_files
        paths: list[Path] = []
        missing: list[str] = []
        above = self._folder_above(data_dir)
        for name, hub_name in zip(self.annotation_files, hub_names, strict=True):
            local = self._local(data_dir, name)
            if local is None and self.hub_repo is not None and above is None:
                try:
                    local = hub.fetch_annotation(self.hub_repo, hub_name)
                except MissingDataError as error:
                    missing.append(f"{_printable(data_dir / name)} ({error})")
                    continue
            if local is None:
                missing.append(_printable(data_dir / name))
            else:
                paths.append(local)
        if missing:
            raise MissingDataError(
                f"{self.name}: missing {'; '.join(missing)}. {self._above_hint(data_dir, above)}"
                f"{self._similar_hint(data_dir, in_recipe)}{self.download_hint}"
            )
        return paths

    def _folder_above(self, data_dir: Path) -> Path | None:
        """The folder one or two levels above `data_dir` that holds this source's annotation files where `data_dir`
        lacks one of them: `data_dir` given one level too deep (an image folder such as `D/coco`)."""
        if all(self._local(data_dir, name) is not None for name in self.annotation_files):
            return None
        for folder in list(data_dir.absolute().parents)[:ABOVE_LEVELS]:
            if all(self._local(folder, name) is not None for name in self.annotation_files):
                return folder
        return None

    def _above_hint(self, data_dir: Path, above: Path | None) -> str:
        """ "did you mean data_dir=FOLDER?" where `above` holds the annotation files `data_dir` lacks."""
        if above is None:
            return ""
        shown = str(above) if data_dir.is_absolute() else os.path.relpath(above)
        verb = "is" if len(self.annotation_files) == 1 else "are"
        return f"Did you mean {setting('data_dir', shown)}? {', '.join(self.annotation_files)} {verb} there. "

    def _similar_hint(self, data_dir: Path, in_recipe: bool) -> str:
        """The files present under `data_dir` whose names resemble a missing annotation file, and how to use them."""
        folders = [data_dir / folder if folder else data_dir for folder in self.annotation_dirs]
        alike = [
            path
            for name in self.annotation_files
            if self._local(data_dir, name) is None
            for path in similar_files(folders, name)
        ]
        if not alike:
            return ""
        names = ", ".join(str(path.relative_to(data_dir)) for path in dict.fromkeys(alike))
        return f"Similarly named files are here: {names}; {read_instead(self.config_name, in_recipe)}. "

    def iter_records(
        self, paths: list[Path], on_bytes: Callable[[int], None] | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Yield `(row_index, raw_record)` over every annotation file, numbering rows across files."""
        offset = 0
        for path in paths:
            count = 0
            for index, record in readers.reader_for(path)(path, on_bytes):
                yield offset + index, record
                count = index + 1
            offset += count
