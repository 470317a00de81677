"""`llava_mixes.load_dataset` (issue 23, item 10) and a mistyped config name from Python (item 4): the wrapper
registers the builder itself and reuses a build only after the freshness check; a typo gets the project's
suggestion, not `datasets`' list of every config."""

from __future__ import annotations

import datasets
import datasets.inspect
import datasets.load
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import llava_mixes
from llava_mixes.building.config import CONFIG_NAMES
from llava_mixes.errors import ConfigError
from llava_mixes.playground.layout import Playground

TYPO = "unknown config 'mix665k-dedup-08'; did you mean mix665k-dedup-0.8, mix665k-dedup-0.9, mix665k-dedup-0.7? "


@pytest.fixture
def unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets` as a process that never imported llava_mixes would have it: no `llava_mixes` name."""
    for module in (datasets.load, datasets.inspect):
        monkeypatch.setattr(module, "dataset_module_factory", module.dataset_module_factory.__wrapped__)


def test_a_mistyped_config_from_python_gets_the_projects_suggestion(playground: Playground) -> None:
    with pytest.raises(ConfigError) as caught:
        datasets.load_dataset("llava_mixes", "mix665k-dedup-08", data_dir=str(playground.root))
    assert str(caught.value) == f"{TYPO}(`llava-mixes list` shows all {len(CONFIG_NAMES)} configs)"
    assert "svit-core" not in str(caught.value)


def test_a_mistyped_config_through_the_builder_gets_the_projects_suggestion(playground: Playground) -> None:
    with pytest.raises(ConfigError, match=r"^unknown config 'mix665k-dedup-08'; did you mean"):
        datasets.load_dataset_builder("llava_mixes", "mix665k-dedup-08", data_dir=str(playground.root))


def test_the_wrapper_registers_the_builder_itself(playground: Playground, unregistered: None) -> None:
    with pytest.raises(Exception, match="llava_mixes") as caught:  # plain `datasets` looks for a Hub dataset
        datasets.load_dataset("llava_mixes", "textocr-gpt4v", data_dir=str(playground.root))
    assert not isinstance(caught.value, ConfigError)
    ds = llava_mixes.load_dataset("textocr-gpt4v", data_dir=str(playground.root))
    fixture = playground.sources["textocr-gpt4v"]
    assert len(ds["train"]) == fixture.rows - len(fixture.expected_rejections)
    assert llava_mixes.load_report(ds).rows_in == fixture.rows


def test_the_wrapper_passes_datasets_own_arguments_and_the_configs(playground: Playground) -> None:
    train = llava_mixes.load_dataset(
        "textocr-gpt4v-dedup-0.8", str(playground.root), split="train", embedder="thumbnail"
    )
    assert isinstance(train, datasets.Dataset) and len(train) > 0


def test_the_wrapper_checks_the_config_name_first(playground: Playground) -> None:
    with pytest.raises(ConfigError) as caught:
        llava_mixes.load_dataset("mix665k-dedup-08", data_dir=str(playground.root))
    assert str(caught.value).startswith(TYPO)


def test_the_wrapper_rebuilds_a_stale_build(playground: Playground) -> None:
    """An annotation file edited after the build: the cached build is not served, it is rebuilt."""
    rows = playground.sources["textocr-gpt4v"].rows
    assert llava_mixes.load_report(llava_mixes.load_dataset("textocr-gpt4v", str(playground.root))).rows_in == rows
    path = playground.root / "train.jsonl"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    again = llava_mixes.load_dataset("textocr-gpt4v", data_dir=str(playground.root))
    assert llava_mixes.load_report(again).rows_in == rows - 1


@given(name=st.one_of(st.text(max_size=300), st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=3)))
def test_any_name_that_is_no_config_is_one_short_clear_error(name: object) -> None:
    assume(name not in CONFIG_NAMES)
    with pytest.raises(ConfigError) as caught:
        llava_mixes.load_dataset(name, data_dir="unused")  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("unknown config ") and len(message) < 1500
