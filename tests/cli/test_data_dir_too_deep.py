"""A `--data-dir` one or two levels too deep (issue 23, item 6): the annotation file in a folder above is noticed,
and "did you mean --data-dir D?" comes before the download instructions; nothing is fetched from the Hub then."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from llava_mixes.builders import SOURCES
from llava_mixes.cli.main import main
from llava_mixes.errors import MissingDataError
from llava_mixes.playground.layout import Playground
from llava_mixes.sources import fetch

DOWNLOAD = SOURCES["mix665k"].download_hint


@pytest.fixture(autouse=True)
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Hub edge: each annotation file a build asks the Hub for, none given."""
    asked: list[str] = []

    def offline(repo_id: str, filename: str) -> Path:
        asked.append(filename)
        raise MissingDataError(f"{filename}: not fetched in this test")

    monkeypatch.setattr(fetch, "fetch_annotation", offline)
    return asked


def _error(caplog: pytest.LogCaptureFixture) -> str:
    [message] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    return message


def test_one_level_too_deep_on_the_command_line(
    playground: Playground, caplog: pytest.LogCaptureFixture, fetched: list[str]
) -> None:
    deep = playground.root / "coco"
    assert main(["build", "mix665k", "--data-dir", str(deep)]) == 2
    assert fetched == []
    message = _error(caplog)
    assert message.startswith(
        f"llava_v1_5_mix665k: missing {deep / 'llava_v1_5_mix665k.json'}. Did you mean --data-dir "
        f"{playground.root}? llava_v1_5_mix665k.json is there. "
    )
    assert message.endswith(DOWNLOAD)


def test_two_levels_too_deep_from_python(playground: Playground) -> None:
    deep = playground.root / "coco" / "train2017"
    with pytest.raises(MissingDataError) as caught:
        datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(deep))
    assert f"Did you mean data_dir={str(playground.root)!r}? llava_v1_5_mix665k.json is there. " in str(caught.value)


def test_a_source_of_several_files_names_them_all(playground: Playground) -> None:
    deep = playground.root / "coco"
    with pytest.raises(MissingDataError) as caught:
        datasets.load_dataset("llava_mixes", "svit-core", data_dir=str(deep))
    files = ", ".join(SOURCES["svit-core"].annotation_files)
    assert f"Did you mean data_dir={str(playground.root)!r}? {files} are there. " in str(caught.value)


def test_a_relative_data_dir_gets_a_relative_suggestion(
    playground: Playground, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(playground.root)
    assert main(["build", "mix665k", "--data-dir", "coco"]) == 2
    assert "Did you mean --data-dir .? llava_v1_5_mix665k.json is there. " in _error(caplog)


def test_three_levels_too_deep_is_not_guessed(playground: Playground, fetched: list[str]) -> None:
    deep = playground.root / "coco" / "train2017" / "x"
    deep.mkdir()
    with pytest.raises(MissingDataError) as caught:
        datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(deep))
    assert "Did you mean" not in str(caught.value) and fetched == ["llava_v1_5_mix665k.json"]


def test_the_right_folder_gets_no_suggestion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "D" / "coco").mkdir(parents=True)
    assert main(["build", "textocr-gpt4v", "--data-dir", str(tmp_path / "D" / "coco")]) == 2
    assert "Did you mean" not in _error(caplog)
