"""Check a dataset repo tree for what would break the Hub dataset viewer or `load_dataset`, before it is pushed.

Checked: the card's YAML parses with `datasets`' own metadata classes (`configs`, `dataset_info`, one
default config); every split's `data_files` match Parquet files; every file carries the `datasets`
feature metadata; all files of a config (across its splits) have one schema, and it is the one the card
declares; row groups are small enough for the viewer to scan; the viewer's limits on configs, splits,
columns, column names, files and files per folder hold; and, when all that passes, `datasets` opens
each config and streams the first row of each split.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard

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


def _card(root: Path, problems: list[str]) -> tuple[MetadataConfigs, DatasetInfosDict] | None:
    readme = root / CARD_FILE
    if not readme.is_file():
        problems.append(f"{CARD_FILE}: missing; the card's YAML `configs` tell the viewer and the loader what to read")
        return None
    try:
        card = DatasetCard.load(readme)
        configs = MetadataConfigs.from_dataset_card_data(card.data)
        infos = DatasetInfosDict.from_dataset_card_data(card.data)
    except (ValueError, TypeError, KeyError, yaml.YAMLError) as error:
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


def _split_patterns(config: dict[str, Any]) -> dict[str, list[str]]:
    data_files = config.get("data_files")
    if isinstance(data_files, str):
        return {"train": [data_files]}
    patterns: dict[str, list[str]] = {}
    for item in data_files or []:
        if isinstance(item, str):
            patterns.setdefault("train", []).append(item)
        else:
            path = item["path"]
            patterns.setdefault(item["split"], []).extend([path] if isinstance(path, str) else path)
    return patterns


def _features(path: Path, root: Path, problems: list[str]) -> tuple[datasets.Features | None, pq.ParquetFile | None]:
    name = path.relative_to(root).as_posix()
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
    name: str,
    config: dict[str, Any],
    declared: datasets.Features | None,
    limits: ViewerLimits,
    problems: list[str],
) -> None:
    patterns = _split_patterns(config)
    if len(patterns) > limits.max_splits:
        problems.append(f"config {name}: {len(patterns)} splits, over the viewer's {limits.max_splits}")
    reference: tuple[str, datasets.Features] | None = None
    for split, split_patterns in patterns.items():
        files = sorted({path for pattern in split_patterns for path in root.glob(pattern) if path.is_file()})
        if not files:
            problems.append(f"config {name}, split {split}: data_files {split_patterns} match no file")
        for path in files:
            file_name = path.relative_to(root).as_posix()
            if path.suffix != ".parquet":
                problems.append(f"config {name}, split {split}: {file_name} is not Parquet; keep every config Parquet")
                continue
            features, parquet = _features(path, root, problems)
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


def _check_tree(root: Path, limits: ViewerLimits, problems: list[str]) -> None:
    files = [
        path
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    if len(files) > limits.max_files:
        problems.append(f"{len(files):,} files, over the Hub's {limits.max_files:,} per repo")
    for folder, count in Counter(path.parent for path in files).items():
        if count > limits.max_files_per_folder:
            name = folder.relative_to(root).as_posix() or "."
            problems.append(f"{name}: {count:,} files, over the Hub's {limits.max_files_per_folder:,} per folder")


def _check_loading(root: Path, configs: MetadataConfigs, problems: list[str]) -> None:
    for name in configs:
        try:
            for split in datasets.get_dataset_split_names(str(root), name):
                next(iter(datasets.load_dataset(str(root), name, split=split, streaming=True)), None)
        except Exception as error:  # noqa: BLE001 - whatever the loader raises is the finding to report
            problems.append(f"config {name}: datasets cannot load it: {type(error).__name__}: {error}")


def check_repo(root: Path, limits: ViewerLimits | None = None) -> list[str]:
    """Every problem found in the repo tree at `root`, each naming the file or config and the fix; empty if none."""
    limits = limits or ViewerLimits()
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a folder"]
    problems: list[str] = []
    _check_tree(root, limits, problems)
    card = _card(root, problems)
    if card is None:
        return problems
    configs, infos = card
    if len(configs) > limits.max_configs:
        problems.append(f"{CARD_FILE}: {len(configs)} configs, over the viewer's {limits.max_configs}")
    for name, config in configs.items():
        info = infos.get(name)
        _check_config(root, name, config, info.features if info is not None else None, limits, problems)
    if not problems:
        _check_loading(root, configs, problems)
    for problem in problems:
        logger.debug("check-repo %s: %s", root, problem)
    return problems
