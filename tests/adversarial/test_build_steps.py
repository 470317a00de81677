"""The steps record of a build (`llava_mixes_steps.json`, issue 22): edited, deleted, replaced by a link, swapped with
another build's, or naming other settings, it never serves a build its steps did not make; a code edit reruns only
the steps it touches."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from llava_mixes import schema
from llava_mixes.building import build, steps
from llava_mixes.building.steps import STEPS_RECORD
from llava_mixes.playground.layout import Playground

FEATURE = "stale builds"
DEDUP = "mix665k-dedup-0.8"


def rebuilt(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("rebuilding")]


def rows(folder: Path, config: str, playground: Playground) -> list[str]:
    built = build(config, str(playground.root), embedder="thumbnail")
    assert built.folder == folder
    return sorted(built.dataset[schema.TRAIN_SPLIT][schema.ID])


def edit_code(data: dict) -> None:
    data["steps"][0]["code"] = "0" * 16


def edit_settings(data: dict) -> None:
    data["steps"][0]["settings"]["threshold"] = 0.5


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize("edit", [edit_code, edit_settings], ids=["code version", "settings"])
def test_a_hand_edited_steps_record_is_a_damaged_build_rebuilt_the_same(
    playground: Playground, edit: Callable[[dict], None], caplog: pytest.LogCaptureFixture
) -> None:
    first = build(DEDUP, str(playground.root), embedder="thumbnail")
    record = first.folder / STEPS_RECORD
    data = json.loads(record.read_text())
    edit(data)
    record.write_text(json.dumps(data))
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        again = rows(first.folder, DEDUP, playground)
    assert again == sorted(first.dataset[schema.TRAIN_SPLIT][schema.ID])
    assert len(rebuilt(caplog)) == 1 and "damaged" in rebuilt(caplog)[0]


@pytest.mark.adversarial("repaired")
def test_a_deleted_steps_record_is_rebuilt(playground: Playground, caplog: pytest.LogCaptureFixture) -> None:
    first = build("mix665k", str(playground.root))
    (first.folder / STEPS_RECORD).unlink()
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        build("mix665k", str(playground.root))
    assert len(rebuilt(caplog)) == 1 and (first.folder / STEPS_RECORD).is_file()


@pytest.mark.adversarial("repaired")
def test_a_steps_record_replaced_by_a_link_to_another_builds_is_rebuilt(
    playground: Playground, caplog: pytest.LogCaptureFixture
) -> None:
    plain = build("mix665k", str(playground.root))
    dedup = build(DEDUP, str(playground.root), embedder="thumbnail")
    (dedup.folder / STEPS_RECORD).unlink()
    (dedup.folder / STEPS_RECORD).symlink_to(plain.folder / STEPS_RECORD)
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        build(DEDUP, str(playground.root), embedder="thumbnail")
    assert len(rebuilt(caplog)) == 1
    assert not (dedup.folder / STEPS_RECORD).is_symlink()


@pytest.mark.adversarial("reflected")
def test_an_edit_of_the_dedup_code_reruns_dedup_and_no_normalisation(
    playground: Playground, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    build(DEDUP, str(playground.root), embedder="thumbnail")
    original = steps.module_digest
    monkeypatch.setattr(
        steps, "module_digest", lambda name: "x" if name == "llava_mixes.dedup.deduplicate" else original(name)
    )
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        build(DEDUP, str(playground.root), embedder="thumbnail")
        build("mix665k", str(playground.root))
    assert [line.split(" in ")[0] for line in rebuilt(caplog)] == [f"rebuilding {DEDUP}"]


@pytest.mark.adversarial("reflected")
def test_a_new_cache_layout_moves_every_build_to_a_new_folder(
    playground: Playground, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llava_mixes import plugin

    first = build("mix665k", str(playground.root)).folder
    monkeypatch.setattr(plugin, "CACHE_LAYOUT", plugin.CACHE_LAYOUT + 1)
    assert build("mix665k", str(playground.root)).folder != first
