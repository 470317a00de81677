"""`deduplicate`'s output pinned on a tricky dataset: what the per-row Python implementation returned (recorded in
`golden_dedup.json` before the Arrow/NumPy rewrite) must stay what it returns, decisions, columns and
fingerprints, and so must its errors.

The rows: text-only rows (null path), paths repeated across rows, byte-identical files (same SHA-256) under
different paths in the same group and in different groups, a null `image_group`, more than one Arrow batch
(> 8192 rows), near-duplicate vectors at the seed study's thresholds. Each case runs from the `embedding` column
and from a `VectorSource` (float32, and float16 as the embedding cache stores them), in group and global scope.

Regenerate the record only on purpose: `python tests/dedup/test_golden.py` writes it from the code as it is.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from golden_rows import DIM, ROWS, DictVectors, as_dataset, tricky_rows

from llava_mixes import deduplicate, schema
from llava_mixes.errors import BadEmbeddingError

GOLDEN = Path(__file__).with_name("golden_dedup.json")


def outcome(result: datasets.DatasetDict) -> dict:
    """Everything `deduplicate` returned that a caller can see, as plain values."""
    shown = (schema.ID, schema.DUPLICATE_OF, schema.SIMILARITY)
    return {
        split: {
            "columns": rows.column_names,
            "fingerprint": rows._fingerprint,
            **{name: rows.select_columns([name]).to_dict()[name] for name in shown},
        }
        for split, rows in result.items()
    }


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


CASES = [
    (source, scope, threshold)
    for source in ("column", "cache", "float16 cache")
    for scope in ("group", "global")
    for threshold in (0.8, 0.9)
]


def run_case(source: str, scope: str, threshold: float) -> dict:
    columns, vectors = tricky_rows()
    if source == "column":
        return outcome(deduplicate(as_dataset(columns, True), threshold, scope, device=None))
    dtype = np.float16 if source == "float16 cache" else np.float32
    cache = DictVectors(vectors, dtype=dtype)
    return outcome(deduplicate(as_dataset(columns, False), threshold, scope, device=None, embeddings=cache))


def error_of(call: object) -> dict:
    with pytest.raises(BadEmbeddingError) as caught:
        call()  # type: ignore[operator]
    return {"message": str(caught.value), "positions": caught.value.positions}


def error_cases() -> dict[str, dict]:
    """The errors of rows without a usable vector, by case."""
    columns, vectors = tricky_rows()
    image_rows = [row for row, path in enumerate(columns["path"]) if path is not None]
    nulled = {key: list(value) for key, value in columns.items()}
    # Nulled: a path's later row (its first row has a vector), and every row of another path.
    later = next(row for row in image_rows[1:] if columns["path"].index(columns["path"][row]) < row)
    lost_path = columns["path"][image_rows[3]]
    for row in [later, *(row for row, path in enumerate(columns["path"]) if path == lost_path)]:
        nulled["vector"][row] = None
    nan = {key: list(value) for key, value in columns.items()}
    broken_sha = columns["sha"][image_rows[5]]
    for row, sha in enumerate(columns["sha"]):
        if sha == broken_sha:
            nan["vector"][row] = np.full(DIM, np.nan, dtype=np.float32)
    absent = {sha: vector for sha, vector in vectors.items() if sha != columns["sha"][image_rows[7]]}
    failing = frozenset({columns["sha"][image_rows[9]]})
    cached_nan = {**vectors, broken_sha: np.full(DIM, np.nan, dtype=np.float32)}
    return {
        "null_vectors": error_of(lambda: deduplicate(as_dataset(nulled, True), 0.8, device=None)),
        "nan_vectors": error_of(lambda: deduplicate(as_dataset(nan, True), 0.8, "global", device=None)),
        "absent_from_cache": error_of(
            lambda: deduplicate(as_dataset(columns, False), 0.8, device=None, embeddings=DictVectors(absent))
        ),
        "failed_in_cache": error_of(
            lambda: deduplicate(as_dataset(columns, False), 0.8, device=None, embeddings=DictVectors(vectors, failing))
        ),
        "nan_in_cache": error_of(
            lambda: deduplicate(as_dataset(columns, False), 0.9, device=None, embeddings=DictVectors(cached_nan))
        ),
        "nan_in_float16_cache": error_of(
            lambda: deduplicate(
                as_dataset(columns, False), 0.9, device=None, embeddings=DictVectors(cached_nan, dtype=np.float16)
            )
        ),
    }


def record() -> dict:
    """What the code returns today: a digest and the split sizes per case, and the errors."""
    cases = {}
    for case in CASES:
        result = run_case(*case)
        sizes = {split: len(value[schema.ID]) for split, value in result.items()}
        cases["/".join(map(str, case))] = {"digest": digest(result), "sizes": sizes}
    return {"cases": cases, "errors": error_cases()}


def test_the_tricky_rows_cover_what_they_claim() -> None:
    columns, _ = tricky_rows()
    paths, hashes, groups = columns["path"], columns["sha"], columns["group"]
    assert paths.count(None) > 0 and len(set(paths)) < len(paths) and ROWS > 8192
    groups_of_sha: dict[str, set[str | None]] = {}
    paths_of_sha: dict[str, set[str]] = {}
    for path, sha, group in zip(paths, hashes, groups, strict=True):
        if path is not None:
            groups_of_sha.setdefault(sha, set()).add(group)
            paths_of_sha.setdefault(sha, set()).add(path)
    assert any(len(found) > 1 for found in groups_of_sha.values())  # one file in two groups
    same_group = [sha for sha, found in paths_of_sha.items() if len(found) > len(groups_of_sha[sha])]
    assert same_group  # one file under two paths of one group
    assert any(path is not None and group is None for path, group in zip(paths, groups, strict=True))


@pytest.mark.parametrize("case", CASES, ids=["/".join(map(str, case)) for case in CASES])
def test_deduplicate_returns_the_recorded_output(case: tuple[str, str, float]) -> None:
    expected = json.loads(GOLDEN.read_text())["cases"]["/".join(map(str, case))]
    result = run_case(*case)
    assert {split: len(value[schema.ID]) for split, value in result.items()} == expected["sizes"]
    assert expected["sizes"]["removed"] > 0
    assert digest(result) == expected["digest"]


def test_byte_identical_files_follow_their_first_path() -> None:
    columns, vectors = tricky_rows()
    result = deduplicate(as_dataset(columns, False), 0.9, device=None, embeddings=DictVectors(vectors))
    first_path: dict[tuple[str | None, str], str] = {}
    for path, sha, group in zip(columns["path"], columns["sha"], columns["group"], strict=True):
        if path is not None:
            first_path.setdefault((group, sha), path)
    removed = result["removed"].to_dict()
    kept_paths = set(result["train"].to_dict()[schema.IMAGE_PATH])
    followers = 0
    for path, sha, group, target, similarity in zip(
        removed[schema.IMAGE_PATH],
        removed[schema.IMAGE_SHA256],
        removed[schema.IMAGE_GROUP],
        removed[schema.DUPLICATE_OF],
        removed[schema.SIMILARITY],
        strict=True,
    ):
        if first_path[(group, sha)] != path and first_path[(group, sha)] in kept_paths:
            assert (target, similarity) == (first_path[(group, sha)], 1.0)
            followers += 1
    assert followers > 0
    assert None in kept_paths  # text-only rows are kept


def test_errors_are_the_recorded_ones() -> None:
    assert error_cases() == json.loads(GOLDEN.read_text())["errors"]


if __name__ == "__main__":
    datasets.disable_progress_bars()
    GOLDEN.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
    sys.stdout.write(f"wrote {GOLDEN}\n")
