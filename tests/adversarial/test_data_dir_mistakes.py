"""Careless and hostile `data_dir`s (issue 23, item 6): a folder one or two levels too deep gets "did you mean
data_dir=D?" only where every annotation file of the source is a regular file there; anything else gets the plain
missing-file error (with the download instructions), never a crash, a wrong guess or a message over several lines."""

from __future__ import annotations

import shlex
from pathlib import Path

import datasets
import pytest

from llava_mixes.builders import SOURCES
from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError, MissingDataError
from llava_mixes.playground.layout import Playground
from llava_mixes.sources import fetch

FEATURE = "annotations and images"
MIX = "llava_v1_5_mix665k.json"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub edge: nothing can be fetched."""

    def refuse(repo_id: str, filename: str) -> Path:
        raise MissingDataError(f"{filename}: not fetched in this test")

    monkeypatch.setattr(fetch, "fetch_annotation", refuse)


def _missing(config: str, data_dir: Path | str) -> str:
    with pytest.raises(MissingDataError) as caught:
        datasets.load_dataset("llava_mixes", config, data_dir=str(data_dir))
    message = str(caught.value)
    assert "\n" not in message
    return message


def _cli_error(argv: list[str], caplog: pytest.LogCaptureFixture) -> str:
    assert main(argv) == 2
    [message] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert "\n" not in message
    return message


def _folder_with(tmp_path: Path, name: str, *files: str) -> Path:
    folder = tmp_path / name
    (folder / "deep" / "deeper").mkdir(parents=True)
    for file in files:
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_text("[]")
    return folder


@pytest.mark.adversarial("correct")
def test_the_parent_holds_a_folder_of_the_annotation_files_name(tmp_path: Path) -> None:
    (tmp_path / "D" / MIX).mkdir(parents=True)
    (tmp_path / "D" / "coco").mkdir()
    assert "Did you mean" not in _missing("mix665k", tmp_path / "D" / "coco")


@pytest.mark.adversarial("correct")
def test_the_parent_holds_a_dangling_link_of_the_annotation_files_name(tmp_path: Path) -> None:
    (tmp_path / "D" / "coco").mkdir(parents=True)
    (tmp_path / "D" / MIX).symlink_to(tmp_path / "nowhere.json")
    assert "Did you mean" not in _missing("mix665k", tmp_path / "D" / "coco")


@pytest.mark.adversarial("correct")
def test_the_parent_holds_a_link_to_the_annotation_file(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_text("[]")
    (tmp_path / "D" / "coco").mkdir(parents=True)
    (tmp_path / "D" / MIX).symlink_to(tmp_path / "real.json")
    assert f"Did you mean data_dir={str(tmp_path / 'D')!r}?" in _missing("mix665k", tmp_path / "D" / "coco")


@pytest.mark.adversarial("correct")
def test_a_source_of_several_files_with_one_in_the_parent_is_not_guessed(tmp_path: Path) -> None:
    first = SOURCES["svit-core"].annotation_files[0]
    folder = _folder_with(tmp_path, "D", first)
    assert "Did you mean" not in _missing("svit-core", folder / "deep")


@pytest.mark.adversarial("correct")
def test_the_files_in_the_parents_own_subfolder_layout_are_found(tmp_path: Path) -> None:
    files = [f"SVIT/data/{name}" for name in SOURCES["svit-core"].annotation_files]
    folder = _folder_with(tmp_path, "D", *files)
    assert f"Did you mean data_dir={str(folder)!r}?" in _missing("svit-core", folder / "deep")


@pytest.mark.adversarial("correct")
def test_three_levels_up_is_too_far(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, "D", MIX)
    (folder / "deep" / "deeper" / "deepest").mkdir()
    assert "Did you mean" not in _missing("mix665k", folder / "deep" / "deeper" / "deepest")


@pytest.mark.adversarial("correct")
def test_the_nearer_folder_wins(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, "D", MIX, f"deep/{MIX}")
    assert f"Did you mean data_dir={str(folder / 'deep')!r}?" in _missing("mix665k", folder / "deep" / "deeper")


@pytest.mark.adversarial("correct")
def test_a_trailing_slash_is_the_same_folder(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, "D", MIX)
    assert f"Did you mean data_dir={str(folder)!r}?" in _missing("mix665k", f"{folder / 'deep'}/")


@pytest.mark.adversarial("correct")
def test_a_dot_dot_path_that_leads_back_builds(playground: Playground) -> None:
    ds = datasets.load_dataset("llava_mixes", "textocr-gpt4v", data_dir=str(playground.root / "coco" / ".."))
    assert len(ds["train"]) > 0


@pytest.mark.adversarial("correct")
def test_a_link_to_the_deep_folder_is_judged_by_its_own_path(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, "D", MIX)
    (tmp_path / "link").symlink_to(folder / "deep")
    assert "Did you mean" not in _missing("mix665k", tmp_path / "link")


@pytest.mark.adversarial("correct")
def test_a_data_dir_at_the_root_of_the_file_system(tmp_path: Path) -> None:
    assert "Did you mean" not in _missing("mix665k", "/")


@pytest.mark.adversarial("error")
def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert "is not a folder" in _missing("mix665k", tmp_path / "file")


@pytest.mark.adversarial("error")
def test_a_data_dir_that_does_not_exist_below_the_right_folder(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, "D", MIX)
    assert "is not a folder" in _missing("mix665k", folder / "absent")


@pytest.mark.adversarial("correct")
def test_a_folder_name_with_spaces_is_quoted_so_the_suggestion_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder_with(tmp_path, "my data", MIX)
    message = _cli_error(["build", "mix665k", "--data-dir", str(folder / "deep")], caplog)
    suggested = message.split("Did you mean ", 1)[1].split("? ", 1)[0]
    assert shlex.split(suggested) == ["--data-dir", str(folder)]


@pytest.mark.adversarial("correct")
def test_a_folder_name_with_a_line_break_keeps_the_error_on_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder_with(tmp_path, "line\nbreak", MIX)
    message = _cli_error(["build", "mix665k", "--data-dir", str(folder / "deep")], caplog)
    assert f"Did you mean --data-dir {str(folder)!r}?" in message


@pytest.mark.adversarial("correct")
def test_a_relative_deep_folder_gets_a_relative_suggestion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder_with(tmp_path, "D", MIX)
    monkeypatch.chdir(folder / "deep")
    message = _cli_error(["build", "mix665k", "--data-dir", "deeper"], caplog)
    assert "Did you mean --data-dir ..? " in message


@pytest.mark.adversarial("correct")
def test_a_suggestion_in_a_recipe_build_names_the_folder_too(
    playground: Playground, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["build", "--recipe", "llava-1.5", "--data-dir", str(playground.root / "coco")]
    message = _cli_error(argv, caplog)
    assert f"Did you mean --data-dir {playground.root}? " in message


@pytest.mark.adversarial("correct")
def test_a_renamed_file_in_the_parent_is_not_taken_for_the_annotation_file(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, "D", "llava_v1_5_mix665k (1).json")
    assert "Did you mean" not in _missing("mix665k", folder / "deep")


@pytest.mark.adversarial("correct")
def test_a_huge_parent_folder_is_not_walked(tmp_path: Path) -> None:
    """Only the annotation files' own names are looked up above: a parent of many files costs nothing."""
    folder = _folder_with(tmp_path, "D", MIX)
    for number in range(2000):
        (folder / f"{number}.json").touch()
    assert f"Did you mean data_dir={str(folder)!r}?" in _missing("mix665k", folder / "deep")


@pytest.mark.adversarial("error")
def test_a_folder_name_in_another_encoding_is_one_clear_error(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, "D\udcff", MIX)
    with pytest.raises(ConfigError) as caught:
        datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(folder / "deep"))
    assert str(caught.value).startswith("data_dir ") and "is not valid UTF-8" in str(caught.value)


@pytest.mark.adversarial("correct")
def test_a_folder_name_with_a_line_break_is_escaped_in_the_missing_list(tmp_path: Path) -> None:
    folder = tmp_path / "a\nb"
    folder.mkdir()
    assert repr(str(folder / MIX)) in _missing("mix665k", folder)
