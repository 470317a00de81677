"""Shared by the decontamination attacks: small benchmark files (pictures, question files, TSVs, saved
datasets) written in a test's folder, a secret picture outside every reference, and what a `ReferenceSet` read."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import datasets
import numpy as np

from llava_mixes.decontam.references import ReferenceSet
from llava_mixes.playground.pictures import encode, synthetic_photo


def picture(seed: int) -> bytes:
    """A small synthetic JPEG photo, the same for the same seed."""
    return encode(synthetic_photo(np.random.default_rng(seed)))


def write(path: Path, data: bytes | str) -> Path:
    """`data` written at `path`, its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def questions(*names: object) -> str:
    """A question file (JSON Lines) whose records name `names` in `image`."""
    return "".join(json.dumps({"question_id": number, "image": name}) + "\n" for number, name in enumerate(names))


def ids(found: ReferenceSet) -> list[str]:
    """The ids of the pictures read, sorted."""
    return sorted(image.ref_id for image in found.images)


def missing(found: ReferenceSet, benchmark: str) -> str:
    """What `benchmark` left out, as one line."""
    return " | ".join(found.missing.get(benchmark, []))


def secret_picture(tmp_path: Path) -> Path:
    """A secret picture outside every reference folder (each module's `outside` fixture)."""
    return write(tmp_path / "outside" / "secret.jpg", picture(7))


def secret_read(found: ReferenceSet, outside: Path) -> bool:
    """Whether the picture outside every reference was read (its content is among those read)."""
    secret = hashlib.sha256(outside.read_bytes()).hexdigest()
    return any(image.sha256 == secret for image in found.images)


def tsv(path: Path, rows: list[tuple[str, str]], header: str = "index\tquestion\timage") -> Path:
    """An MMBench-style TSV of `(index, image cell)` rows."""
    return write(path, header + "\n" + "".join(f"{index}\tQ?\t{cell}\n" for index, cell in rows))


def b64(seed: int) -> str:
    """A picture as a TSV's base64 cell."""
    return base64.b64encode(picture(seed)).decode()


def saved(folder: Path, rows: list[dict[str, object]]) -> Path:
    """A dataset of `rows` (Image column) saved with `save_to_disk` in `folder`."""
    features = datasets.Features({"question_id": datasets.Value("int64"), "image": datasets.Image()})
    dataset = datasets.Dataset.from_dict({"question_id": list(range(len(rows))), "image": rows}, features=features)
    dataset.save_to_disk(str(folder))
    return folder
