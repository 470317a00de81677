"""Check a dataset repo tree for what would break the Hub dataset viewer or `load_dataset`, before it is pushed.

Checked: the manifest is whole and every file it records is in place with its SHA-256 and size, no file it does
not record would be read as data, and no publish is unfinished (a journal or staging folder left by a killed
publish); the card's YAML parses (bounded: `front_matter`) with `datasets`' own metadata classes (`configs`,
`dataset_info`, one default config) and lists the manifest's configs; every split's `data_files` are relative
patterns inside the tree that match Parquet files; every file carries the `datasets` feature metadata; all files
of a config (across its splits) have one schema, and it is the one the card declares; row groups are small
enough for the viewer to scan; the viewer's limits on configs, splits, columns, column names, files and files
per folder hold; and, when all that passes, `datasets` resolves each config's data files and the first row of
each split reads, casts to its features and decodes.

The tree is untrusted: every path from the card or the manifest is resolved inside it (`paths.contained`) before
it is read, and links are listed but never followed out of it. The first rows are read with native Arrow files,
not `datasets`' streaming reader, whose file objects Arrow's threads may release during interpreter shutdown
(apache/arrow#45214: "terminate called without an active exception").
"""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets.data_files import DataFilesDict
from datasets.info import DatasetInfosDict
from datasets.table import table_cast
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from llava_mixes.errors import LlavaMixesError, PathEscapeError
from llava_mixes.paths import contained
from llava_mixes.publish.front_matter import MAX_CARD_BYTES, read_front_matter
from llava_mixes.publish.local import JOURNAL_FILE, STAGING_NAME, tree_files
from llava_mixes.publish.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, matches, parse_manifest, unrecorded_read
from llava_mixes.publish.parquet import sha256_file

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
FEATURES_KEY = b"huggingface"


@dataclass(frozen=True)
class ViewerLimits:
    """The Hub viewer's and the Hub's limits (dataset-viewer's production config and the storage-limits doc)."""

    max_row_group_bytes: int = 300_000_000
    """Uncompressed bytes the viewer reads at most to serve rows (`rowsIndex.maxArrowDataInMemory`)."""
    max_configs: int = 4000
    max_splits: int = 30
    max_columns: int = 1000
    max_column_name: int = 500
    max_files: int = 100_000
    max_files_per_folder: int = 10_000
    max_file_bytes: int = 50_000_000_000
    """Larger files are accepted by the Hub but slow to upload and serve; shard them."""


def _read(root: Path, name: str, limit: int, problems: list[str]) -> bytes | None:
    """The bytes of the root file `name`, or None (with the problem) when it is a link out, not a file or too big."""
    try:
        path = contained(root, name, what=name)
        found = os.stat(path)
        if not stat.S_ISREG(found.st_mode) or found.st_size > limit:
            problems.append(f"{name}: not a regular file of at most {limit:,} bytes")
            return None
        return path.read_bytes()
    except (PathEscapeError, OSError) as error:
        problems.append(f"{name}: cannot be read ({error})")
        return None


def _card(root: Path, problems: list[str]) -> tuple[MetadataConfigs, DatasetInfosDict] | None:
    if not os.path.lexists(root / CARD_FILE):
        problems.append(f"{CARD_FILE}: missing; the card's YAML `configs` tell the viewer and the loader what to read")
        return None
    data = _read(root, CARD_FILE, MAX_CARD_BYTES, problems)
    if data is None:
        return None
    try:
        metadata, _ = read_front_matter(data, CARD_FILE)
        card = DatasetCardData(**metadata)
        configs = MetadataConfigs.from_dataset_card_data(card)
        infos = DatasetInfosDict.from_dataset_card_data(card)
    except LlavaMixesError as error:
        problems.append(str(error))
        return None
    except (ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as error:
        problems.append(f"{CARD_FILE}: datasets cannot parse the card's YAML: {error}")
        return None
    if not configs:
        problems.append(f"{CARD_FILE}: the YAML has no `configs`; list each config with its data_files")
        return None
    try:
        default = configs.get_default_config_name()
    except ValueError as error:
        problems.append(f"{CARD_FILE}: {error}")
        return None
    if default is None:
        problems.append(f"{CARD_FILE}: no config has `default: true`; mark exactly one")
    return configs, infos


def _manifest(root: Path, problems: list[str]) -> dict[str, Any] | None:
    if not os.path.lexists(root / MANIFEST_FILE):
        problems.append(
            f"{MANIFEST_FILE}: missing, so no file's checksum can be verified; publish the tree with llava-mixes"
        )
        return None
    data = _read(root, MANIFEST_FILE, MAX_MANIFEST_BYTES, problems)
    if data is None:
        return None
    try:
        return parse_manifest(data, str(root))
    except LlavaMixesError as error:
        problems.append(str(error))
        return None


def _check_files(root: Path, manifest: dict[str, Any], listing: list[str], problems: list[str]) -> None:
    """Every file the manifest records is in place with its size and SHA-256; no unrecorded file is read as data."""
    for name, entry in sorted(manifest["configs"].items()):
        for path, record in sorted({**entry["files"], **entry.get("card_files", {})}.items()):
            try:
                file = contained(root, path, what=f"{path}, recorded for config {name},")
            except PathEscapeError as error:
                problems.append(f"{path}: missing or outside the tree ({error}); publish again to restore it")
                continue
            if not _is_regular_in(root, path) or file.stat().st_size != record["size"]:
                problems.append(f"{path}: not the file the manifest records ({record['size']:,} bytes expected)")
            elif sha256_file(file) != record["sha256"]:
                problems.append(f"{path}: its SHA-256 differs from the manifest's; the file is damaged or replaced")
    for path in unrecorded_read(listing, manifest):
        problems.append(f"{path}: not recorded in the manifest, yet the card's data_files would load it; remove it")


def _is_regular_in(root: Path, path: str) -> bool:
    """Whether the repo file `path` is itself a regular file (not a link to one)."""
    try:
        return stat.S_ISREG(os.lstat(root / path).st_mode)
    except OSError:
        return False


def _check_unfinished(root: Path, problems: list[str]) -> None:
    """A journal or staging folder that a killed publish left."""
    for name in sorted(os.listdir(root)):
        if name == JOURNAL_FILE:
            problems.append(
                f"{name}: a publish was interrupted while it committed; the tree is a mix of two releases until "
                "the next publish into this folder finishes it"
            )
        elif STAGING_NAME.fullmatch(name):
            problems.append(f"{name}: left by an interrupted (or running) publish; the next publish removes it")


def _split_patterns(config: dict[str, Any], problems: list[str], name: str) -> dict[str, list[str]]:
    """`{split: [pattern]}` of a config's `data_files`; a pattern that is not a relative path inside the tree is a
    problem, not a pattern."""
    data_files = config.get("data_files")
    items = [data_files] if isinstance(data_files, str) else data_files if isinstance(data_files, list) else []
    patterns: dict[str, list[str]] = {}
    for item in items:
        split, paths = ("train", item) if isinstance(item, str) else (item.get("split"), item.get("path"))
        for path in [paths] if isinstance(paths, str) else paths if isinstance(paths, list) else [None]:
            parts = PurePosixPath(path).parts if isinstance(path, str) else ()
            if not isinstance(split, str) or not parts or path.startswith("/") or ".." in parts or "\\" in path:
                problems.append(
                    f"config {name}: data_files entry {str(item)[:120]!r} is not a relative path pattern inside "
                    "the tree"
                )
                continue
            patterns.setdefault(split, []).append(path)
    return patterns


def _features(path: Path, name: str, problems: list[str]) -> tuple[datasets.Features | None, pq.ParquetFile | None]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        problems.append(f"{name}: not a readable Parquet file ({error})")
        return None, None
    metadata = parquet.schema_arrow.metadata or {}
    if FEATURES_KEY not in metadata:
        problems.append(
            f"{name}: no `huggingface` feature metadata in the Parquet schema, so images load as plain structs; "
            "write it with datasets (Dataset.to_parquet / push_to_hub)"
        )
        return None, parquet
    return datasets.Features.from_arrow_schema(parquet.schema_arrow), parquet


def _check_file(name: str, parquet: pq.ParquetFile, size: int, limits: ViewerLimits, problems: list[str]) -> None:
    if size > limits.max_file_bytes:
        problems.append(f"{name}: {size:,} bytes, over {limits.max_file_bytes:,}; use smaller shards")
    for index in range(parquet.metadata.num_row_groups):
        group = parquet.metadata.row_group(index)
        if group.total_byte_size > limits.max_row_group_bytes:
            problems.append(
                f"{name}: row group {index} holds {group.total_byte_size:,} uncompressed bytes ({group.num_rows:,} "
                f"rows), over the viewer's {limits.max_row_group_bytes:,}-byte scan limit; write smaller row groups"
            )


def _check_config(
    root: Path,
    listing: list[str],
    name: str,
    config: dict[str, Any],
    declared: datasets.Features | None,
    limits: ViewerLimits,
    problems: list[str],
) -> None:
    patterns = _split_patterns(config, problems, name)
    if len(patterns) > limits.max_splits:
        problems.append(f"config {name}: {len(patterns)} splits, over the viewer's {limits.max_splits}")
    reference: tuple[str, datasets.Features] | None = None
    for split, split_patterns in patterns.items():
        matched = sorted({file for pattern in split_patterns for file in listing if matches(pattern, file)})
        if not matched:
            problems.append(f"config {name}, split {split}: data_files {split_patterns} match no file")
        for file_name in matched:
            try:
                path = contained(root, file_name, what=f"{file_name} (config {name}, split {split})")
            except PathEscapeError as error:
                problems.append(str(error))
                continue
            if not path.is_file():
                problems.append(f"config {name}, split {split}: {file_name} is not a file")
            elif path.suffix != ".parquet":
                problems.append(f"config {name}, split {split}: {file_name} is not Parquet; keep every config Parquet")
                continue
            features, parquet = _features(path, file_name, problems)
            if parquet is not None:
                _check_file(file_name, parquet, path.stat().st_size, limits, problems)
            if features is None:
                continue
            if reference is None:
                reference = (f"{split} ({file_name})", features)
                _check_columns(name, features, limits, problems)
            elif features != reference[1]:
                problems.append(
                    f"config {name}: {file_name} (split {split}) has a schema that differs from {reference[0]}: "
                    f"{_difference(reference[1], features)}"
                )
    if declared is not None and reference is not None and declared != reference[1]:
        problems.append(
            f"config {name}: the card's dataset_info features differ from the files': "
            f"{_difference(declared, reference[1])}"
        )


def _check_columns(name: str, features: datasets.Features, limits: ViewerLimits, problems: list[str]) -> None:
    if len(features) > limits.max_columns:
        problems.append(f"config {name}: {len(features)} columns, over the viewer's {limits.max_columns}")
    for column in features:
        if len(column) > limits.max_column_name:
            problems.append(f"config {name}: column name {column[:40]!r}… is over {limits.max_column_name} characters")


def _difference(expected: datasets.Features, found: datasets.Features) -> str:
    missing = [column for column in expected if column not in found]
    extra = [column for column in found if column not in expected]
    changed = [column for column in expected if column in found and expected[column] != found[column]]
    parts = [
        f"{label} {columns}"
        for label, columns in (("missing", missing), ("extra", extra), ("typed differently", changed))
        if columns
    ]
    return "; ".join(parts) or "column order differs"


def _check_tree(listing: list[str], limits: ViewerLimits, problems: list[str]) -> None:
    if len(listing) > limits.max_files:
        problems.append(f"{len(listing):,} files, over the Hub's {limits.max_files:,} per repo")
    for folder, count in Counter(PurePosixPath(path).parent.as_posix() for path in listing).items():
        if count > limits.max_files_per_folder:
            problems.append(f"{folder}: {count:,} files, over the Hub's {limits.max_files_per_folder:,} per folder")


def _check_loading(root: Path, configs: MetadataConfigs, infos: DatasetInfosDict, problems: list[str]) -> None:
    """`datasets` resolves each config's data files; the first row of each split reads, casts to the card's features
    (or the file's) and decodes."""
    for name, config in configs.items():
        info = infos.get(name)
        try:
            files = DataFilesDict.from_patterns(_split_patterns(config, [], name), base_path=str(root))
            for split_files in files.values():
                _first_row(root, [str(file) for file in split_files], info.features if info is not None else None)
        except Exception as error:  # noqa: BLE001 - whatever the loader raises is the finding to report
            problems.append(f"config {name}: datasets cannot load it: {type(error).__name__}: {error}")


def _first_row(root: Path, files: list[str], features: datasets.Features | None) -> None:
    for file in sorted(files):
        path = contained(root, file, what="a data file")
        with pq.ParquetFile(str(path)) as parquet:
            if parquet.metadata.num_rows == 0:
                continue
            batch = next(parquet.iter_batches(batch_size=1))
            features = features or datasets.Features.from_arrow_schema(parquet.schema_arrow)
        table = table_cast(pa.Table.from_batches([batch]), features.arrow_schema)
        features.decode_example(table.to_pylist()[0])
        return


def check_repo(root: Path, limits: ViewerLimits | None = None) -> list[str]:
    """Every problem found in the repo tree at `root`, each naming the file or config and the fix; empty if none."""
    limits = limits or ViewerLimits()
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a folder"]
    problems: list[str] = []
    listing = tree_files(root)
    _check_tree(listing, limits, problems)
    _check_unfinished(root, problems)
    manifest = _manifest(root, problems)
    if manifest is not None:
        _check_files(root, manifest, listing, problems)
    card = _card(root, problems)
    if card is None:
        return problems
    configs, infos = card
    if manifest is not None and sorted(configs) != sorted(manifest["configs"]):
        problems.append(
            f"{CARD_FILE}: lists the configs {sorted(configs)}, the manifest {sorted(manifest['configs'])}; "
            "the card was edited, or belongs to another release"
        )
    if len(configs) > limits.max_configs:
        problems.append(f"{CARD_FILE}: {len(configs)} configs, over the viewer's {limits.max_configs}")
    for name, config in configs.items():
        info = infos.get(name)
        _check_config(root, listing, name, config, info.features if info is not None else None, limits, problems)
    if not problems:
        _check_loading(root, configs, infos, problems)
    for problem in problems:
        logger.debug("check-repo %s: %s", root, problem)
    return problems
