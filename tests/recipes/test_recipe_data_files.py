"""A recipe's sources under other file names: `data_files:` on a source's entry, `--data-files CONFIG=FILE` (and
data_files={CONFIG: FILE}) overriding it, missing-file errors that name only those remedies, and the files in the
cache key of that source's build."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from llava_mixes.building.entry import build
from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError, MissingDataError
from llava_mixes.playground import Playground

RENAMED = "textocr-gpt4v.train.jsonl"


def renamed(playground: Playground) -> Path:
    """The playground with textOCR's annotation file under the name of the issue's folder."""
    (playground.root / "train.jsonl").rename(playground.root / RENAMED)
    return playground.root


def recipe(tmp_path: Path, entry: str) -> Path:
    path = tmp_path / "ocr.yaml"
    path.write_text(f"name: ocr\nsources:\n  - config: mix665k\n  - {entry}\n")
    return path


def textocr_rows(built: object) -> int:
    return built.report.recipe["sources"]["textocr-gpt4v"]["rows_in"]  # type: ignore[attr-defined]


def test_a_missing_file_names_the_recipe_key_and_the_per_source_flag(playground: Playground, tmp_path: Path) -> None:
    root = renamed(playground)
    with pytest.raises(MissingDataError) as caught:
        build("recipe", str(root), str(tmp_path / "hf"), recipe=str(recipe(tmp_path, "config: textocr-gpt4v")))
    message = str(caught.value)
    assert RENAMED in message and "`data_files: <file>` on the `config: textocr-gpt4v` entry" in message
    assert "--data-files textocr-gpt4v=<file>" in message
    assert "--data-files <file>`" not in message and "data_files=<file>" not in message


def test_a_plain_build_still_names_the_plain_flag(playground: Playground, tmp_path: Path) -> None:
    root = renamed(playground)
    with pytest.raises(MissingDataError, match=r"pass `--data-files <file>` \(data_files=<file> from Python\)"):
        build("textocr-gpt4v", str(root), str(tmp_path / "hf"))


def test_the_recipe_key_reads_a_renamed_file_and_keys_its_build(playground: Playground, tmp_path: Path) -> None:
    root = renamed(playground)
    path = recipe(tmp_path, f"{{config: textocr-gpt4v, data_files: {RENAMED}}}")
    first = build("recipe", str(root), str(tmp_path / "hf"), recipe=str(path))
    assert textocr_rows(first) > 1
    # The file's content is part of the key: one row fewer rebuilds that source.
    lines = (root / RENAMED).read_text().splitlines()
    (root / RENAMED).write_text("\n".join(lines[1:]) + "\n")
    second = build("recipe", str(root), str(tmp_path / "hf"), recipe=str(path))
    assert textocr_rows(second) == textocr_rows(first) - 1
    # So is its name: a copy under another name is another build of that source.
    (root / "copy.jsonl").write_text("\n".join(lines) + "\n")
    other = recipe(tmp_path, "{config: textocr-gpt4v, data_files: [copy.jsonl]}")
    third = build("recipe", str(root), str(tmp_path / "hf"), recipe=str(other))
    assert textocr_rows(third) == textocr_rows(first)
    assert third.folder != second.folder


def test_the_flag_reads_a_renamed_file_and_overrides_the_key(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = renamed(playground)
    path = recipe(tmp_path, "{config: textocr-gpt4v, data_files: gone.jsonl}")
    caches = ["--cache-dir", str(tmp_path / "hf"), "--content-cache-dir", str(tmp_path / "cc")]
    argv = ["build", "--recipe", str(path), "--data-dir", str(root), "--stats-json", str(tmp_path / "s.json")]
    assert main([*argv, *caches, "--data-files", f"textocr-gpt4v={RENAMED}"]) == 0
    assert "textocr-gpt4v" in capsys.readouterr().out
    built = build("recipe", str(root), str(tmp_path / "hf"), recipe=str(path), data_files={"textocr-gpt4v": RENAMED})
    assert textocr_rows(built) > 1


def test_the_flag_names_the_recipe_sources(playground: Playground, tmp_path: Path) -> None:
    root = renamed(playground)
    path = recipe(tmp_path, "config: textocr-gpt4v")
    argv = ["build", "--recipe", str(path), "--data-dir", str(root), "--cache-dir", str(tmp_path / "hf")]
    assert main([*argv, "--data-files", f"svit-mix665k={RENAMED}"]) == 2
    assert main([*argv, "--data-files", RENAMED]) == 2
    with pytest.raises(ConfigError, match=r"CONFIG is one of \['mix665k', 'textocr-gpt4v'\]"):
        build("recipe", str(root), str(tmp_path / "hf"), recipe=str(path), data_files={"svit-mix665k": RENAMED})


def test_a_shipped_recipe_builds_on_a_renamed_file_with_one_flag(playground: Playground, tmp_path: Path) -> None:
    root = renamed(playground)
    caches = ["--cache-dir", str(tmp_path / "hf"), "--content-cache-dir", str(tmp_path / "cc")]
    argv = ["build", "--recipe", "llava-en-all", "--data-dir", str(root), "--stats-json", str(tmp_path / "s.json")]
    assert main([*argv, *caches]) == 2
    assert main([*argv, *caches, "--data-files", f"textocr-gpt4v={RENAMED}"]) == 0


def test_a_sampled_source_beside_another_builds_with_no_duplicate_rows(playground: Playground, tmp_path: Path) -> None:
    # `datasets` cannot add a column to an empty selection of concatenated tables: the empty duplicate_row split
    # of a sampled source and a second source once failed with "Failed to concatenate on axis=1".
    path = tmp_path / "sampled.yaml"
    path.write_text("sources:\n  - config: mix665k\n    sample: 3\n  - config: textocr-gpt4v\n")
    built = build("recipe", str(playground.root), str(tmp_path / "hf"), recipe=str(path))
    assert len(built.dataset["duplicate_row"]) == 0
    assert "duplicate_of" in built.dataset["duplicate_row"].column_names
    assert built.report.recipe["sources"]["mix665k"]["kept"] == 3


def test_a_recipe_decontaminated_against_pictures_it_lacks_builds(playground: Playground, tmp_path: Path) -> None:
    # The empty contaminated split of two concatenated sources once failed the same way as the test above.
    benchmark = tmp_path / "benchmark"
    benchmark.mkdir()
    Image.new("RGB", (64, 48), (200, 30, 90)).save(benchmark / "unrelated.png")
    path = tmp_path / "clean.yaml"
    path.write_text(
        f"sources:\n  - config: mix665k\n  - config: textocr-gpt4v\ndecontaminate:\n  references: [{benchmark}]\n"
    )
    built = build("recipe", str(playground.root), str(tmp_path / "hf"), recipe=str(path))
    contaminated = built.dataset["contaminated"]
    assert len(contaminated) == 0 and {"matched_reference", "similarity"} <= set(contaminated.column_names)
