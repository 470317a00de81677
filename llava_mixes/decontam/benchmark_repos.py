"""Where a named benchmark's pictures are (`locate`) and reading them (`entry_pictures`): Parquet files of a Hub
dataset repo, with the pictures' bytes in an `Image` column (or a list of them).

An entry is read from, in this order:
1. the mirror folder the user names (`mirror=`, else the environment variable `LLAVA_MIXES_BENCHMARK_MIRROR`),
   where it holds `<owner>/<name>/` as `hf download <owner>/<name> --repo-type dataset --local-dir
   MIRROR/<owner>/<name>` writes it; a mirror is untrusted: it is walked with `paths.walk_files` and every file is
   resolved inside it with `paths.contained`;
2. the Hub cache (`huggingface_hub`'s, never the user's folders): online, the repo's README and then only the
   split's files are fetched into it (`snapshot_download(allow_patterns=...)`); offline (`HF_HUB_OFFLINE=1`),
   the cached snapshot is read where there is one. A cached file is a link into the repo's cache folder, and is
   read only where it resolves inside that folder.

A split's files are those the repo's README `configs:` names for it (`data_files`), else `<config>/<split>-*` or
`<config>/<split>/*` (`data/` for the default config), as `push_to_hub` and the Hub's Parquet converter write them.
Only `.parquet` files are read, only the listed columns, batch by batch.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from llava_mixes.decontam.benchmark_sets import BenchmarkEntry
from llava_mixes.errors import ConfigError, PathEscapeError
from llava_mixes.network import NETWORK_ERRORS
from llava_mixes.paths import Skipped, contained, walk_files

MIRROR_ENV = "LLAVA_MIXES_BENCHMARK_MIRROR"
"""The environment variable naming the benchmark mirror folder (`--benchmark-mirror` sets it for a command)."""
ID_COLUMNS = ("question_id", "id", "index", "image_id", "questionId")
MAX_README_BYTES = 1 << 20
_BATCH_ROWS = 64
_HUB_ERRORS = (
    OSError,
    ValueError,
    huggingface_hub.errors.HfHubHTTPError,
    huggingface_hub.errors.LocalEntryNotFoundError,
    *NETWORK_ERRORS,
)


class Unreadable(Exception):
    """Why a located benchmark cannot be read (a shard that does not read, a column of the wrong type)."""


@dataclass
class Located:
    """A benchmark entry found: read from the mirror or the Hub cache (`where`), at which revision (the Hub
    cache's commit; None in a mirror), its Parquet files per split, and what was left out on the way."""

    entry: BenchmarkEntry
    where: str
    revision: str | None
    files: dict[str, list[Path]]
    notes: list[str] = field(default_factory=list)

    def inputs(self) -> list[Path]:
        """Every file reading this entry opens."""
        return [path for split in self.entry.splits for path in self.files[split]]


def mirror_folder(mirror: str | os.PathLike | None) -> Path | None:
    """The mirror folder: `mirror`, else `$LLAVA_MIXES_BENCHMARK_MIRROR`, resolved; None where neither is set;
    `ConfigError` where it names no folder."""
    named = mirror if mirror not in (None, "") else os.environ.get(MIRROR_ENV) or None
    if named is None:
        return None
    try:
        folder = Path(named).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        folder = None
    if folder is None or not folder.is_dir():
        where = "mirror=" if mirror not in (None, "") else f"${MIRROR_ENV}="
        raise ConfigError(f"benchmark mirror {where}{str(named)!r} is not a folder; name one that holds owner/name/")
    return folder


def fetch_command(entry: BenchmarkEntry, mirror: Path | None) -> str:
    """The `hf download` command that puts `entry`'s split files (and its README) into a mirror folder."""
    includes = " ".join(f"--include '{pattern}'" for pattern in ["README.md", *_default_patterns(entry)])
    target = f"{mirror or 'MIRROR'}/{entry.repo}"
    return f"hf download {entry.repo} --repo-type dataset {includes} --local-dir {target}"


def _default_patterns(entry: BenchmarkEntry, split: str | None = None) -> list[str]:
    folder = entry.config or "data"
    splits = entry.splits if split is None else (split,)
    return [pattern for name in splits for pattern in (f"{folder}/{name}-*", f"{folder}/{name}/*")]


def _front_matter(readme: Path | None, notes: list[str]) -> dict[str, Any]:
    if readme is None:
        return {}
    try:
        with open(readme, "rb") as handle:
            data = handle.read(MAX_README_BYTES + 1)
    except OSError as error:
        notes.append(f"README.md ({os.strerror(error.errno or 0)})")
        return {}
    text = data[:MAX_README_BYTES].decode("utf-8", "replace")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        loaded = yaml.safe_load(text[3:end] if end > 0 else "")
    except (yaml.YAMLError, RecursionError, ValueError) as error:
        notes.append(f"README.md (its YAML header does not parse: {type(error).__name__}; the default layout is read)")
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _strings(value: object) -> list[str]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [item for item in items if isinstance(item, str)]


def _data_files(value: object) -> list[tuple[str, list[str]]]:
    """A README config's `data_files` as (split, patterns): a list of `{split, path}`, or paths (`train`)."""
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return [
            (item["split"], _strings(item.get("path")))
            for item in value
            if isinstance(item, dict) and isinstance(item.get("split"), str)
        ]
    return [("train", _strings(value))]


def split_patterns(entry: BenchmarkEntry, readme: Path | None, notes: list[str]) -> dict[str, list[str]]:
    """Per split of `entry`, the file patterns that hold it: from the README's `configs:` where it names the
    entry's config (`default` without one), else the default layout."""
    wanted = entry.config or "default"
    configs = _front_matter(readme, notes).get("configs")
    found: dict[str, list[str]] = {}
    for config in configs if isinstance(configs, list) else []:
        if isinstance(config, dict) and config.get("config_name", "default") == wanted:
            for split, paths in _data_files(config.get("data_files")):
                found.setdefault(split, []).extend(paths)
    return {split: found.get(split) or _default_patterns(entry, split) for split in entry.splits}


def _choose(entry: BenchmarkEntry, names: dict[str, Path], notes: list[str]) -> dict[str, list[Path]]:
    patterns = split_patterns(entry, names.get("README.md"), notes)
    return {
        split: [
            path
            for name, path in sorted(names.items())
            if name.endswith(".parquet") and any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns[split])
        ]
        for split in entry.splits
    }


def _mirror_names(mirror: Path, entry: BenchmarkEntry, notes: list[str]) -> dict[str, Path] | str:
    """The files of `entry`'s repo in the mirror, by their path inside it; or why there are none."""
    if not os.path.lexists(mirror / entry.repo):
        return f"not in the mirror {mirror}"
    try:
        folder = contained(mirror, entry.repo, "mirror folder")
    except PathEscapeError as error:
        return str(error)
    if not folder.is_dir():
        return f"{mirror / entry.repo} is not a folder"

    def skipped(item: Skipped) -> None:
        notes.append(
            f"{item.path.relative_to(folder) if item.path.is_relative_to(folder) else item.path} ({item.reason})"
        )

    keep = lambda name: name.endswith(".parquet") or name == "README.md"  # noqa: E731
    names = {}
    for path in walk_files(folder, keep, skipped):
        name = path.relative_to(folder).as_posix()
        if not name.startswith(".cache/"):
            names[name] = path
    return names


def _hub_names(entry: BenchmarkEntry, notes: list[str]) -> tuple[str, dict[str, Path]] | str:
    """The revision and files of `entry`'s repo in the Hub cache (online: its README and split files fetched
    into it first); or why there are none."""
    offline = huggingface_hub.constants.is_offline_mode()
    cache_dir = huggingface_hub.constants.HF_HUB_CACHE
    common = {"repo_type": "dataset", "cache_dir": cache_dir, "local_files_only": offline}
    try:
        snapshot = Path(huggingface_hub.snapshot_download(entry.repo, allow_patterns=["README.md"], **common))
        revision = snapshot.name
        if not offline:
            readme = snapshot / "README.md"
            patterns = split_patterns(entry, readme if readme.is_file() else None, [])
            wanted = sorted({pattern for split in entry.splits for pattern in patterns[split]})
            huggingface_hub.snapshot_download(entry.repo, revision=revision, allow_patterns=wanted, **common)
    except _HUB_ERRORS as error:
        where = "in the Hub cache (offline)" if offline else "on the Hub"
        return f"not found {where}: {type(error).__name__}: {str(error)[:160]}"
    repo_folder = snapshot.parent.parent
    names = {}
    for folder, _, files in os.walk(snapshot):
        for file in files:
            name = (Path(folder) / file).relative_to(snapshot).as_posix()
            if not (name.endswith(".parquet") or name == "README.md"):
                continue
            try:
                names[name] = contained(repo_folder, f"snapshots/{revision}/{name}", "cached file")
            except PathEscapeError as error:
                notes.append(f"{name} ({error})")
    return revision, names


def locate(entry: BenchmarkEntry, mirror: Path | None) -> Located | str:
    """`entry` found whole (a file for every split) in the mirror, else in the Hub cache; or why it is not."""
    why = []
    if mirror is not None:
        notes: list[str] = []
        names = _mirror_names(mirror, entry, notes)
        found = (
            names
            if isinstance(names, str)
            else _whole(Located(entry, "mirror", None, _choose(entry, names, notes), notes))
        )
        if isinstance(found, Located):
            return found
        why.append(found)
    notes = []
    hub = _hub_names(entry, notes)
    found = (
        hub
        if isinstance(hub, str)
        else _whole(Located(entry, "hub cache", hub[0], _choose(entry, hub[1], notes), notes))
    )
    return found if isinstance(found, Located) else "; ".join([*why, found])


def _whole(found: Located) -> Located | str:
    empty = [split for split in found.entry.splits if not found.files[split]]
    if empty:
        return f"no Parquet file for the split(s) {empty} in the {found.where}"
    return found


def _image_kind(field_type: pa.DataType) -> str | None:
    """`one` for an `Image` column (a struct with `bytes`), `many` for a list of them, None otherwise."""
    if pa.types.is_struct(field_type):
        names = [field_type.field(index).name for index in range(field_type.num_fields)]
        if "bytes" in names:
            kind = field_type.field(names.index("bytes")).type
            return "one" if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) else None
        return None
    if pa.types.is_list(field_type) or pa.types.is_large_list(field_type):
        return "many" if _image_kind(field_type.value_type) == "one" else None
    return None


def _columns(entry: BenchmarkEntry, schema: pa.Schema, shard: str) -> dict[str, str]:
    present = {name: schema.field(name).type for name in entry.columns if name in schema.names}
    if not present:
        raise Unreadable(f"{shard}: no column {list(entry.columns)}; its columns are {schema.names[:20]}")
    kinds = {}
    for name, field_type in present.items():
        kind = _image_kind(field_type)
        if kind is None:
            raise Unreadable(f"{shard}: column {name!r} is {field_type}, not an Image (a struct with bytes) or a list")
        kinds[name] = kind
    return kinds


def entry_pictures(found: Located) -> Iterator[tuple[str, bytes | None, str]]:
    """Every picture of a located entry, as (id, bytes, why not): bytes None where a row's picture has no bytes
    (`why not` says so); a row without a picture is passed over. Raises `Unreadable` for a shard that does not
    read or whose columns are not pictures."""
    entry = found.entry
    for split in entry.splits:
        for number, path in enumerate(found.files[split]):
            shard = f"{split}/{path.name}"
            try:
                parquet = pq.ParquetFile(path)
                kinds = _columns(entry, parquet.schema_arrow, shard)
                id_column = next((name for name in ID_COLUMNS if name in parquet.schema_arrow.names), None)
                wanted = [*kinds, *([id_column] if id_column and id_column not in kinds else [])]
                row = 0
                for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=wanted):
                    records = batch.to_pydict()
                    for offset in range(batch.num_rows):
                        key = str(records[id_column][offset])[:80] if id_column else f"{number}:{row + offset}"
                        for column, kind in kinds.items():
                            value = records[column][offset]
                            values = [value] if kind == "one" else list(value or [])
                            for position, item in enumerate(values):
                                label = f"{split}/{key}" + (f"/{column}" if len(kinds) > 1 else "")
                                label += f"#{position}" if kind == "many" else ""
                                yield _picture(label, item)
                    row += batch.num_rows
            except (OSError, pa.ArrowException, ValueError, TypeError) as error:
                raise Unreadable(f"{shard} does not read ({type(error).__name__}: {str(error)[:160]})") from None


def _picture(label: str, item: object) -> tuple[str, bytes | None, str]:
    if not isinstance(item, dict) or (not item.get("bytes") and not item.get("path")):
        return label, None, ""
    if item.get("bytes"):
        return label, bytes(item["bytes"]), ""
    return label, None, "a path and no bytes; a benchmark's pictures are read from its Parquet bytes only"
