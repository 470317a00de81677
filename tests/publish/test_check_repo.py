from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llava_mixes.cli.main import main
from llava_mixes.playground.layout import Playground
from llava_mixes.publish.check_repo import ViewerLimits, check_repo
from llava_mixes.publish.publish import CARD_FILE, MANIFEST_FILE
from llava_mixes.workflows.release import release

DEDUP = "mix665k-dedup-0.8"
TRAIN = f"{DEDUP}/train-00000-of-00001.parquet"
REMOVED = f"{DEDUP}/removed-00000-of-00001.parquet"


@pytest.fixture
def repo(playground: Playground, tmp_path: Path) -> Path:
    out = tmp_path / "repo"
    release(
        [DEDUP],
        "demo/llava_mixes",
        "1.0.0",
        str(playground.root),
        local_dir=out,
        config_kwargs={"embedder": "thumbnail"},
    )
    return out


def rerecord(repo: Path) -> None:
    """Record the tree's files as they are now in its manifest (dropping those gone), so that only the viewer's
    checks, not the checksums, see an edit."""
    manifest = json.loads((repo / MANIFEST_FILE).read_text())
    for entry in manifest["configs"].values():
        for path in list(entry["files"]):
            if (repo / path).is_file():
                data = (repo / path).read_bytes()
                entry["files"][path] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            else:
                del entry["files"][path]
                for split in entry["splits"].values():
                    split["files"] = [name for name in split["files"] if name != path]
    (repo / MANIFEST_FILE).write_text(json.dumps(manifest))


def one(problems: list[str], *words: str) -> str:
    """The single problem found, checked to contain every word."""
    assert len(problems) == 1, problems
    assert all(word in problems[0] for word in words), problems[0]
    return problems[0]


def test_a_published_tree_passes_and_the_cli_says_ok(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_repo(repo) == []
    assert main(["check-repo", str(repo)]) == 0
    assert capsys.readouterr().out.strip() == f"{repo}: ok"


def test_split_schemas_that_differ_fail(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = pq.read_table(repo / REMOVED)
    pq.write_table(table.append_column("extra", pa.array(["x"] * table.num_rows)), repo / REMOVED)
    rerecord(repo)
    one(check_repo(repo), f"config {DEDUP}", REMOVED, "(split removed) has a schema that differs", "extra ['extra']")
    assert main(["check-repo", str(repo)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL config mix665k-dedup-0.8") and out.rstrip().endswith("1 problem(s)")


def test_files_without_feature_metadata_fail(repo: Path) -> None:
    table = pq.read_table(repo / TRAIN)
    pq.write_table(table.replace_schema_metadata(None), repo / TRAIN)
    rerecord(repo)
    problems = check_repo(repo)
    assert any(TRAIN in problem and "no `huggingface` feature metadata" in problem for problem in problems)


def test_row_groups_too_large_to_scan_fail(repo: Path) -> None:
    problems = check_repo(repo, ViewerLimits(max_row_group_bytes=50_000))
    one(problems, TRAIN, "row group 0 holds", "over the viewer's 50,000-byte scan limit")


@pytest.mark.parametrize(
    ("yaml_text", "words"),
    [
        ("configs: [\n  - config_name: a\n", ("cannot parse the card's YAML",)),
        (
            f"configs:\n- config_name: {DEDUP}\n  data_files:\n  - split: tr-ain\n    path: {DEDUP}/train-*\n",
            ("cannot parse the card's YAML", "dashes"),
        ),
        (
            f"configs:\n- config_name: {DEDUP}\n  data_files: {DEDUP}/train-*\n  default: true\n"
            f"- config_name: b\n  data_files: {DEDUP}/removed-*\n  default: true\n",
            ("several default configs",),
        ),
        ("pretty_name: x\n", ("has no `configs`",)),
    ],
)
def test_card_yaml_that_datasets_cannot_use_fails(repo: Path, yaml_text: str, words: tuple[str, ...]) -> None:
    (repo / CARD_FILE).write_text(f"---\n{yaml_text}---\n\n# card\n")
    one(check_repo(repo), CARD_FILE, *words)


def test_data_files_that_match_nothing_fail(repo: Path) -> None:
    (repo / REMOVED).unlink()
    rerecord(repo)
    one(check_repo(repo), f"config {DEDUP}, split removed", "match no file")


def test_files_that_are_not_parquet_fail(repo: Path) -> None:
    (repo / DEDUP / "removed-notes.json").write_text("{}")
    problems = check_repo(repo)
    assert len(problems) == 2 and "removed-notes.json is not Parquet" in problems[1], problems
    assert problems[0].startswith(f"{DEDUP}/removed-notes.json: not recorded in the manifest, yet the card's data")


def test_the_viewers_count_limits_are_checked(repo: Path) -> None:
    limits = ViewerLimits(max_splits=1, max_columns=5, max_files_per_folder=1, max_configs=0, max_column_name=10)
    problems = check_repo(repo, limits)
    for words in (
        "2 splits, over the viewer's 1",
        "12 columns, over the viewer's 5",
        f"{DEDUP}: 2 files, over the Hub's 1 per folder",
        "1 configs, over the viewer's 0",
        "column name 'image_sha256'",
    ):
        assert any(words in problem for problem in problems), (words, problems)


def test_a_missing_folder_or_card_fails(tmp_path: Path) -> None:
    one(check_repo(tmp_path / "nowhere"), "not a folder")
    manifest, card = check_repo(tmp_path)
    assert manifest.startswith(f"{MANIFEST_FILE}: missing, so no file's checksum can be verified")
    assert card.startswith(f"{CARD_FILE}: missing")
