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
- a Hub id of a dataset with an `Image` column (every split), named after the id (`owner/name`, or
  `hf://datasets/owner/name`, which is never read as a path);
- a named benchmark set (`llava-1.5-evals`, `lmms-eval-images`) or one entry of it (`llava-1.5-evals/pope`):
  Hub repos read from a mirror folder or the Hub cache (`decontam.benchmark_repos`), each entry named
  `SET/ENTRY`; a name that is also a path here is refused as ambiguous (write `./NAME` for the folder);
- a `(name, reference)` pair, to name it yourself.

A benchmark's files are untrusted input: its folder is walked with `paths.walk_files`, and every name found in
it (a picture a question names, a split or data file of a saved dataset, a picture path stored in a saved or
Hub dataset) is resolved with `paths.contained`, so nothing outside the benchmark's folder is read. What is left
out (a link that leads out, dangles or loops, a picture not found, a line or row that cannot be read) is named
in the log and counted in `ReferenceSet.missing`. `references_fingerprint` covers every file loading reads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import pyarrow as pa

from llava_mixes import schema
from llava_mixes.decontam.benchmark_repos import mirror_folder
from llava_mixes.decontam.benchmark_sets import BenchmarkEntry, BenchmarkSet, named_entries, suggest_set
from llava_mixes.decontam.named_benchmarks import fingerprint_lines, read_named, stat_key
from llava_mixes.decontam.reference_files import contained_picture, tsv_pictures
from llava_mixes.decontam.reference_layouts import Planned, exists, plan_path, short
from llava_mixes.errors import ConfigError, PathEscapeError
from llava_mixes.network import NETWORK_ERRORS

logger = logging.getLogger(__name__)

ID_COLUMNS = ("question_id", "id", "index", "image_id")
HUB_PREFIX = "hf://datasets/"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_READ_BLOCK = 1 << 20
_SHOWN = 5

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
    """Every reference image, and per benchmark what could not be read (each with why): pictures its question
    files name that are not found or lead out of its folder, links it skipped, lines and rows that do not read."""

    images: list[ReferenceImage]
    missing: dict[str, list[str]]
    benchmarks: list[str]
    named: list[dict[str, Any]] = field(default_factory=list)
    """Per entry of a named set read: where from, the revision, the files and pictures, their digest."""


def _file_image(benchmark: str, ref_id: str, path: Path) -> ReferenceImage:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BLOCK):
            digest.update(block)
    return ReferenceImage(benchmark, ref_id, digest.hexdigest(), str(path), None)


def _bytes_image(benchmark: str, ref_id: str, data: bytes) -> ReferenceImage:
    return ReferenceImage(benchmark, ref_id, hashlib.sha256(data).hexdigest(), None, data)


def _unique(notes: list[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def _load_saved(folder: Path) -> datasets.Dataset | datasets.DatasetDict:
    try:
        return datasets.load_from_disk(str(folder))
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as error:
        raise ConfigError(
            f"saved dataset {str(folder)!r} cannot be loaded ({type(error).__name__}: {short(str(error))}); "
            "save it again with save_to_disk"
        ) from None


def _read(plan: Planned) -> tuple[list[ReferenceImage], list[str]]:
    """The pictures of a planned benchmark, read; and everything left out, each once."""
    images: list[ReferenceImage] = []
    missing = list(plan.missing)
    for ref_id, path in plan.pictures:
        try:
            images.append(_file_image(plan.name, ref_id, path))
        except OSError as error:
            missing.append(f"{ref_id} ({os.strerror(error.errno) if error.errno else error})")
    for tsv in plan.tsvs:
        found, lost = tsv_pictures(tsv)
        distinct: dict[str, ReferenceImage] = {}
        for index, data in found:
            image = _bytes_image(plan.name, f"{tsv.name}:{index}", data)
            distinct.setdefault(image.sha256, image)
        images += distinct.values()
        missing += lost
    if plan.saved is not None:
        found_images, lost = dataset_images(plan.name, _load_saved(plan.saved), [plan.saved])
        images += found_images
        missing += lost
    return images, _unique(missing)


def dataset_images(
    benchmark: str, dataset: datasets.Dataset | datasets.DatasetDict, roots: Sequence[Path] | None = None
) -> tuple[list[ReferenceImage], list[str]]:
    """The pictures of every `Image` column of `dataset` (every split of a `DatasetDict`), each content once; the
    id is the row's `question_id`, `id`, `index` or `image_id` where it has one, else `split/row`. A picture
    stored as a path is read only inside one of `roots` (None: the dataset is the caller's own, read as given);
    the rows whose picture cannot be read come back as `id (why)`."""
    splits = (
        dataset.items() if isinstance(dataset, datasets.DatasetDict) else [(str(dataset.split or "rows"), dataset)]
    )
    images: dict[str, ReferenceImage] = {}
    missing: list[str] = []
    for split, part in splits:
        columns = [name for name, feature in part.features.items() if isinstance(feature, datasets.Image)]
        if not columns:
            raise ConfigError(
                f"reference {benchmark!r} has no Image column; its columns are {list(part.features)[:20]}: "
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
                ref_id = short(str(record[id_column]), 80) if id_column else f"{split}/{row}"
                data, why = _stored_bytes(stored, roots)
                if data is None:
                    missing.append(f"{ref_id} ({why})")
                    continue
                image = _bytes_image(benchmark, ref_id, data)
                images.setdefault(image.sha256, image)
    return list(images.values()), missing


def _stored_bytes(stored: dict[str, Any], roots: Sequence[Path] | None) -> tuple[bytes | None, str]:
    if stored.get("bytes"):
        return stored["bytes"], ""
    written = stored.get("path")
    if not isinstance(written, str) or not written:
        return None, "no picture bytes and no path"
    try:
        path = Path(written) if roots is None else contained_picture([Path(root) for root in roots], written)
        return path.read_bytes(), ""
    except PathEscapeError as error:
        return None, short(str(error))
    except (OSError, ValueError) as error:
        return None, short(f"{written}: {error}")


def _hub_id(value: object) -> str | None:
    """The Hub dataset id `value` names (`hf://datasets/owner/name`, or `owner/name` that is not a path here)."""
    if not isinstance(value, str):
        return None
    if value.startswith(HUB_PREFIX):
        return value[len(HUB_PREFIX) :]
    return value if HUB_ID.fullmatch(value) and ".." not in value and not exists(Path(value)) else None


def _hub_images(name: str, repo: str) -> tuple[list[ReferenceImage], list[str]]:
    try:
        dataset = datasets.load_dataset(repo)
    except (OSError, ValueError, *NETWORK_ERRORS) as error:
        raise ConfigError(
            f"reference {repo!r} not found: no such file or folder (relative paths are read from {os.getcwd()}), "
            f"and no Hub dataset {repo!r} could be loaded ({type(error).__name__}: {short(str(error))})"
            f"{suggest_set(repo)}"
        ) from None
    roots = [Path(datasets.config.HF_DATASETS_CACHE), Path(huggingface_hub.constants.HF_HUB_CACHE)]
    return dataset_images(name, dataset, [root for root in roots if root.is_dir()])


def _split(reference: Any) -> tuple[str | None, Any]:
    if isinstance(reference, tuple):
        if len(reference) != 2 or not isinstance(reference[0], str):
            raise ConfigError(f"reference {short(repr(reference))} is not allowed; a pair must be (name, reference)")
        return reference
    return None, reference


def _as_list(references: Sequence[Reference] | Reference) -> list[Reference]:
    if isinstance(references, (str, os.PathLike, datasets.Dataset, datasets.DatasetDict)):
        return [references]
    return list(references)


def _is_path(value: object) -> bool:
    return isinstance(value, (str, os.PathLike)) and exists(Path(value))


def _add(found: ReferenceSet, benchmark: str, images: list[ReferenceImage], missing: list[str]) -> None:
    found.images.extend(images)
    found.benchmarks.append(benchmark)
    if missing:
        found.missing.setdefault(benchmark, []).extend(missing)
        shown = "; ".join(missing[:_SHOWN]) + (f"; and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else "")
        logger.warning("%s: %d pictures not read (counted as not found): %s", benchmark, len(missing), shown)


def _named(value: object) -> tuple[BenchmarkSet, tuple[BenchmarkEntry, ...]] | None:
    """The named set (and entries) `value` names, or None; `ConfigError` where it is also a path here."""
    named = named_entries(value)
    if named is not None and exists(Path(str(value))):
        raise ConfigError(
            f"reference {value!r} is both a benchmark set and a path in {os.getcwd()}; write ./{value} for the "
            "folder, or run from another folder for the set"
        )
    return named


def _read_named(found: ReferenceSet, name: str | None, value: object, mirror: Path | None, store: Path | None) -> bool:
    """Add the named set `value` names to `found`; False where it names none."""
    named = _named(value)
    if named is None:
        return False
    for read in read_named(*named, mirror, store):
        benchmark = read.benchmark if name is None else f"{name}/{read.benchmark.split('/', 1)[1]}"
        images = [
            ReferenceImage(benchmark, ref_id, sha, str(path) if path else None, data)
            for ref_id, sha, path, data in read.pictures
        ]
        _add(found, benchmark, images, read.missing)
        found.named.append({**read.record, "benchmark": benchmark})
    return True


def load_references(
    references: Sequence[Reference] | Reference,
    mirror: str | os.PathLike | None = None,
    picture_store: str | os.PathLike | None = None,
) -> ReferenceSet:
    """Every reference image of `references` (see the module docstring), in the order given; a named set's
    entries are read from `mirror` (None: `$LLAVA_MIXES_BENCHMARK_MIRROR`) or the Hub cache, and their pictures
    kept as files in `picture_store` (None: in memory; see `decontam.named_benchmarks`)."""
    references = _as_list(references)
    if not references:
        raise ConfigError("references=[] is not allowed; give at least one benchmark (a folder, file or dataset)")
    found = ReferenceSet([], {}, [])
    folder = mirror_folder(mirror) if any(_named(_split(item)[1]) for item in references) else None
    for reference in references:
        name, value = _split(reference)
        if _read_named(found, name, value, folder, Path(picture_store) if picture_store else None):
            continue
        if isinstance(value, (datasets.Dataset, datasets.DatasetDict)):
            benchmark = name or (value.info.dataset_name if isinstance(value, datasets.Dataset) else None) or "dataset"
            _add(found, benchmark, *dataset_images(benchmark, value))
        elif _is_path(value) and not str(value).startswith(HUB_PREFIX):
            for plan in plan_path(name, Path(value)):
                _add(found, plan.name, *_read(plan))
        elif (repo := _hub_id(value)) is not None:
            _add(found, name or repo, *_hub_images(name or repo, repo))
        else:
            raise ConfigError(
                f"reference {short(repr(value))} not found: give an existing folder or file (relative paths are read "
                f"from {os.getcwd()}), a datasets.Dataset with an Image column, a Hub dataset id (owner/name), a "
                f"benchmark set (`llava-mixes list --benchmarks`) or a (name, reference) pair{suggest_set(value)}"
            )
    return found


def references_fingerprint(
    references: Sequence[Reference] | Reference, mirror: str | os.PathLike | None = None
) -> str:
    """A digest of what loading `references` reads: for a path, per benchmark every file read (question files,
    TSVs, the pictures the questions name, every picture of an image folder, every file of a saved dataset) by its
    path, size, modification and change times and inode (a change time cannot be set back), and what was left
    out; a dataset's fingerprint; a Hub id; for a named set, its list file's digest and each entry's files
    (`named_benchmarks.fingerprint_lines`, which locates them as loading does)."""
    digest = hashlib.sha256()
    references = _as_list(references)
    folder = mirror_folder(mirror) if any(_named(_split(item)[1]) for item in references) else None
    for reference in references:
        name, value = _split(reference)
        digest.update(f"name={name}\n".encode())
        if (named := _named(value)) is not None:
            for line in fingerprint_lines(*named, folder):
                digest.update(line.encode(errors="surrogateescape"))
        elif isinstance(value, datasets.Dataset):
            digest.update(f"dataset={value._fingerprint}\n".encode())
        elif isinstance(value, datasets.DatasetDict):
            digest.update(f"dataset={[part._fingerprint for part in value.values()]}\n".encode())
        elif _is_path(value) and not str(value).startswith(HUB_PREFIX):
            for plan in plan_path(name, Path(value)):
                digest.update(f"benchmark={plan.name}\t{plan.root}\n".encode())
                for path in plan.inputs:
                    digest.update(f"{path}\t{stat_key(path)}\n".encode(errors="surrogateescape"))
                for note in plan.missing:
                    digest.update(f"missing\t{note}\n".encode(errors="surrogateescape"))
        else:
            digest.update(f"id={value}\n".encode(errors="surrogateescape"))
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
