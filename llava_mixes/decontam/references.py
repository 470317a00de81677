"""Evaluation benchmarks' pictures, read from the layouts people have them in, as one list of reference images.

A reference is one of:
- a `datasets.Dataset` (or `DatasetDict`) with an `Image` column, named after its `info.dataset_name`;
- a folder saved by `save_to_disk`;
- LLaVA's evaluation layout (`playground/data/eval/`, see its `docs/Evaluation.md` and
  `scripts/v1_5/eval/*.sh`): a benchmark folder holds question files, `*.jsonl` whose records name their
  picture in `image` (e.g. `pope/llava_pope_test.jsonl` with `pope/val2014/`), resolved under that folder,
  and/or MMBench's `*.tsv`, whose `image` column holds base64 pictures (a short number there stands for the
  picture of the row with that `index`, as VLMEvalKit writes repeated pictures). A benchmark folder is named
  after itself; a folder of benchmark folders (the `eval/` folder) gives one benchmark per sub-folder;
- a question file (`*.jsonl`) or a TSV on its own, named after its folder;
- an image folder (recursive, any other folder), named after the folder;
- a Hub id of a dataset with an `Image` column (every split), named after the id;
- a `(name, reference)` pair, to name it yourself.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from llava_mixes import schema
from llava_mixes.errors import ConfigError
from llava_mixes.store import write_atomic

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
QUESTION_SUFFIX = ".jsonl"
TSV_SUFFIX = ".tsv"
ID_COLUMNS = ("question_id", "id", "index", "image_id")
SAVED_MARKERS = ("state.json", "dataset_dict.json")

Reference = str | os.PathLike | datasets.Dataset | datasets.DatasetDict | tuple
"""What `load_references` accepts for one reference (see the module docstring)."""


@dataclass(frozen=True)
class ReferenceImage:
    """One picture of a benchmark: where it came from, and its file or its bytes."""

    benchmark: str
    ref_id: str
    sha256: str
    path: str | None
    data: bytes | None

    @property
    def label(self) -> str:
        """`benchmark:id`, as the `matched_reference` column shows it."""
        return f"{self.benchmark}:{self.ref_id}"


@dataclass
class ReferenceSet:
    """Every reference image, and per benchmark the pictures its question files name that are not on disk."""

    images: list[ReferenceImage]
    missing: dict[str, list[str]]
    benchmarks: list[str]


def _file_image(benchmark: str, ref_id: str, path: Path) -> ReferenceImage:
    data = path.read_bytes()
    return ReferenceImage(benchmark, ref_id, hashlib.sha256(data).hexdigest(), str(path), None)


def _bytes_image(benchmark: str, ref_id: str, data: bytes) -> ReferenceImage:
    return ReferenceImage(benchmark, ref_id, hashlib.sha256(data).hexdigest(), None, data)


def _image_files(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_SUFFIXES):
                yield Path(root) / name


def image_folder(benchmark: str, folder: Path) -> list[ReferenceImage]:
    """Every picture under `folder` (by suffix, recursively), its id its path relative to `folder`."""
    return [_file_image(benchmark, path.relative_to(folder).as_posix(), path) for path in _image_files(folder)]


def _resolve(folder: Path, name: str, by_name: dict[str, list[Path]]) -> Path | None:
    direct = folder / name
    if direct.is_file():
        return direct
    candidates = by_name.get(Path(name).name, [])
    suffix = "/" + Path(name).as_posix()
    ending = [path for path in candidates if path.as_posix().endswith(suffix)]
    if len(ending) == 1 or (ending and len(set(ending)) == 1):
        return ending[0]
    return candidates[0] if len(candidates) == 1 else None


def question_files(benchmark: str, folder: Path, files: Sequence[Path]) -> tuple[list[ReferenceImage], list[str]]:
    """The distinct pictures that the records of `files` (JSON Lines) name in `image`, found under `folder`
    (as given, else by file name anywhere below it); and the names found nowhere."""
    by_name: dict[str, list[Path]] = {}
    for path in _image_files(folder):
        by_name.setdefault(path.name, []).append(path)
    images: dict[Path, ReferenceImage] = {}
    missing: list[str] = []
    for file in files:
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("%s line %d is not JSON; skipped", file, number)
                    continue
                name = record.get("image") if isinstance(record, dict) else None
                if not isinstance(name, str) or not name:
                    continue
                path = _resolve(folder, name, by_name)
                if path is None:
                    missing.append(name)
                elif path not in images:
                    images[path] = _file_image(benchmark, path.relative_to(folder).as_posix(), path)
    return list(images.values()), sorted(set(missing))


def tsv_images(benchmark: str, file: Path) -> tuple[list[ReferenceImage], list[str]]:
    """The base64 pictures of an MMBench-style TSV (`index` and `image` columns), id `file:index`; and the
    indices whose picture does not decode from base64."""
    csv.field_size_limit(sys.maxsize)
    rows: dict[str, str] = {}
    with open(file, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if reader.fieldnames is None or "image" not in reader.fieldnames:
            raise ConfigError(f"{file} has no 'image' column; its columns are {reader.fieldnames}")
        for number, row in enumerate(reader):
            rows[str(row.get("index", number))] = row["image"] or ""
    images: dict[str, ReferenceImage] = {}
    missing: list[str] = []
    for index, value in rows.items():
        if len(value) <= 64 and value in rows and value != index:
            value = rows[value]
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            data = b""
        if not data:
            missing.append(f"{file.name}:{index}")
            continue
        image = _bytes_image(benchmark, f"{file.name}:{index}", data)
        images.setdefault(image.sha256, image)
    return list(images.values()), missing


def _benchmark_files(folder: Path) -> tuple[list[Path], list[Path]]:
    files = sorted(path for path in folder.iterdir() if path.is_file())
    return (
        [path for path in files if path.suffix == QUESTION_SUFFIX],
        [path for path in files if path.suffix == TSV_SUFFIX],
    )


def benchmark_folder(benchmark: str, folder: Path) -> tuple[list[ReferenceImage], list[str]]:
    """A benchmark folder of LLaVA's evaluation layout: its question files' pictures and its TSVs' pictures."""
    questions, tsvs = _benchmark_files(folder)
    images, missing = question_files(benchmark, folder, questions) if questions else ([], [])
    for tsv in tsvs:
        found, lost = tsv_images(benchmark, tsv)
        images += found
        missing += lost
    return images, missing


def dataset_images(benchmark: str, dataset: datasets.Dataset | datasets.DatasetDict) -> list[ReferenceImage]:
    """The pictures of every `Image` column of `dataset` (every split of a `DatasetDict`), each content once; the
    id is the row's `question_id`, `id`, `index` or `image_id` where it has one, else `split/row`."""
    splits = (
        dataset.items() if isinstance(dataset, datasets.DatasetDict) else [(str(dataset.split or "rows"), dataset)]
    )
    images: dict[str, ReferenceImage] = {}
    for split, part in splits:
        columns = [name for name, feature in part.features.items() if isinstance(feature, datasets.Image)]
        if not columns:
            raise ConfigError(
                f"reference {benchmark!r} has no Image column; its columns are {list(part.features)}: "
                "give a dataset with an Image column, an image folder or LLaVA's eval layout"
            )
        id_column = next((name for name in ID_COLUMNS if name in part.column_names), None)
        for column in columns:
            readable = part.select_columns([column] + ([id_column] if id_column else []))
            readable = readable.cast_column(column, datasets.Image(decode=False))
            for row, record in enumerate(readable):
                stored = record[column]
                if stored is None:
                    continue
                ref_id = str(record[id_column]) if id_column else f"{split}/{row}"
                data = stored.get("bytes") or Path(stored["path"]).read_bytes()
                image = _bytes_image(benchmark, ref_id, data)
                images.setdefault(image.sha256, image)
    return list(images.values())


def _is_eval_root(folder: Path) -> list[Path]:
    return [sub for sub in sorted(folder.iterdir()) if sub.is_dir() and any(_benchmark_files(sub))]


def _from_path(name: str | None, path: Path, found: ReferenceSet) -> None:
    def add(benchmark: str, images: list[ReferenceImage], missing: Sequence[str] = ()) -> None:
        found.images.extend(images)
        found.benchmarks.append(benchmark)
        if missing:
            found.missing.setdefault(benchmark, []).extend(missing)
            logger.warning("%s: %d pictures named by its questions were not found", benchmark, len(missing))

    if path.is_file() and path.suffix == QUESTION_SUFFIX:
        add(name or path.parent.name, *question_files(name or path.parent.name, path.parent, [path]))
    elif path.is_file() and path.suffix == TSV_SUFFIX:
        add(name or path.parent.name, *tsv_images(name or path.parent.name, path))
    elif path.is_dir() and any((path / marker).is_file() for marker in SAVED_MARKERS):
        add(name or path.name, dataset_images(name or path.name, datasets.load_from_disk(str(path))))
    elif path.is_dir() and any(_benchmark_files(path)):
        add(name or path.name, *benchmark_folder(name or path.name, path))
    elif path.is_dir() and _is_eval_root(path):
        for sub in sorted(item for item in path.iterdir() if item.is_dir()):
            prefix = f"{name}/" if name else ""
            if any(_benchmark_files(sub)):
                add(prefix + sub.name, *benchmark_folder(prefix + sub.name, sub))
            else:
                add(prefix + sub.name, image_folder(prefix + sub.name, sub))
    elif path.is_dir():
        add(name or path.name, image_folder(name or path.name, path))
    else:
        raise ConfigError(f"reference {str(path)!r} is not allowed; give a folder, a .jsonl question file or a .tsv")


def _split(reference: Any) -> tuple[str | None, Any]:
    if isinstance(reference, tuple):
        if len(reference) != 2 or not isinstance(reference[0], str):
            raise ConfigError(f"reference {reference!r} is not allowed; a pair must be (name, reference)")
        return reference
    return None, reference


def load_references(references: Sequence[Reference]) -> ReferenceSet:
    """Every reference image of `references` (see the module docstring), in the order given."""
    if isinstance(references, (str, os.PathLike, datasets.Dataset, datasets.DatasetDict)):
        references = [references]
    if not references:
        raise ConfigError("references=[] is not allowed; give at least one benchmark (a folder, file or dataset)")
    found = ReferenceSet([], {}, [])
    for reference in references:
        name, value = _split(reference)
        if isinstance(value, (datasets.Dataset, datasets.DatasetDict)):
            benchmark = name or (value.info.dataset_name if isinstance(value, datasets.Dataset) else None) or "dataset"
            found.images.extend(dataset_images(benchmark, value))
            found.benchmarks.append(benchmark)
        elif isinstance(value, (str, os.PathLike)) and Path(value).exists():
            _from_path(name, Path(value), found)
        elif isinstance(value, str) and value.count("/") == 1:
            found.images.extend(dataset_images(name or value, datasets.load_dataset(value)))
            found.benchmarks.append(name or value)
        else:
            raise ConfigError(
                f"reference {value!r} is not allowed; give an existing folder or file, a datasets.Dataset with an "
                "Image column, a Hub dataset id (owner/name) or a (name, reference) pair"
            )
    return found


def references_fingerprint(references: Sequence[Reference]) -> str:
    """A digest that changes when a reference's files change (path, size and modification time of every file
    under a reference path), or a Hub id or an in-memory dataset's fingerprint does."""
    if isinstance(references, (str, os.PathLike, datasets.Dataset, datasets.DatasetDict)):
        references = [references]
    digest = hashlib.sha256()
    for reference in references:
        name, value = _split(reference)
        digest.update(f"name={name}\n".encode())
        if isinstance(value, datasets.Dataset):
            digest.update(f"dataset={value._fingerprint}\n".encode())
        elif isinstance(value, datasets.DatasetDict):
            digest.update(f"dataset={[part._fingerprint for part in value.values()]}\n".encode())
        elif isinstance(value, (str, os.PathLike)) and Path(value).exists():
            root = Path(value)
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for path in files:
                stat = path.stat()
                digest.update(f"{path.relative_to(root.parent)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        else:
            digest.update(f"id={value}\n".encode())
    return digest.hexdigest()


def reference_dataset(images: Sequence[ReferenceImage]) -> datasets.Dataset:
    """The reference images as rows with `image` (undecoded) and `image_sha256`, as the embedding cache reads."""
    return datasets.Dataset.from_dict(
        {
            schema.IMAGE: [{"path": image.path, "bytes": image.data} for image in images],
            schema.IMAGE_SHA256: [image.sha256 for image in images],
        },
        features=datasets.Features(
            {schema.IMAGE: datasets.Image(decode=False), schema.IMAGE_SHA256: datasets.Value("string")}
        ),
    )


REFERENCES_RECORD = "llava_mixes_references.json"
"""In a decontaminated build: the fingerprint of the reference files it was checked against."""


def record_references(folder: Path, references: Sequence[Reference]) -> None:
    """Write, in a build's folder, the fingerprint of the references it was checked against."""
    write_atomic(folder / REFERENCES_RECORD, json.dumps({"references": references_fingerprint(references)}).encode())


def references_changed(folder: Path, references: Sequence[Reference]) -> str | None:
    """Why the references recorded in a build's folder are not those on disk now, or None when they are."""
    try:
        record = json.loads((folder / REFERENCES_RECORD).read_text())
    except (OSError, ValueError):
        return "it has no record of the benchmark pictures it was checked against"
    if record.get("references") != references_fingerprint(references):
        return "the benchmark pictures it was checked against changed"
    return None
