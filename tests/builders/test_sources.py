"""Every source builds from the playground's files, written in that source's own format with its quirks."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import datasets
import pytest
from helpers import assert_schema_invariants

import llava_mixes
from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.builders.textocr_gpt4v import PROMPTS, prompt_for
from llava_mixes.errors import BadRecordError
from llava_mixes.playground.layout import Playground, write_playground

NEW_SOURCES = [name for name, source in SOURCES.items() if source.family is None or name == "onevision-sharegpt4o"]
"""Every source of the registry but the subsets of a release (whose whole release is here, and one subset with the
quirks): a source the playground writes no fixture for fails here, never skips."""


@pytest.fixture(scope="module")
def shared_playground(tmp_path_factory: pytest.TempPathFactory) -> Playground:
    """One playground for the tests that only read it."""
    return write_playground(tmp_path_factory.mktemp("shared") / "playground")


def load(playground: Playground, config: str, **kwargs: object) -> datasets.DatasetDict:
    return datasets.load_dataset("llava_mixes", config, data_dir=str(playground.root), **kwargs)


def by_source_id(dataset: datasets.Dataset) -> dict[str, dict]:
    return {row[schema.SOURCE_ID]: row for row in dataset}


@pytest.mark.parametrize("config", NEW_SOURCES)
def test_plain_config_keeps_the_invariants_and_rejects_what_was_planted(
    shared_playground: Playground, config: str
) -> None:
    fixture = shared_playground.sources[config]
    dataset = load(shared_playground, config)
    train = dataset["train"]
    assert_schema_invariants(train)
    assert set(train[schema.SOURCE]) == {SOURCES[config].name}
    assert None not in train[schema.TASK]
    report = llava_mixes.load_report(dataset)
    assert {f"{r.source}-{r.row_index:07d}": r.reason for r in report.rejected} == fixture.expected_rejections
    assert all(r.detail for r in report.rejected)
    assert report.rows_in == fixture.rows == len(train) + report.rejected_rows
    total = report.total()
    assert (total.rows, total.rejected_rows) == (len(train), report.rejected_rows)


@pytest.mark.parametrize("config", NEW_SOURCES)
def test_dedup_config_removes_exactly_the_planted_copies(shared_playground: Playground, config: str) -> None:
    dataset = load(shared_playground, f"{config}-dedup-0.8", embedder="thumbnail")
    removed = dataset["removed"]
    planted = shared_playground.sources[config].planted
    assert {row[schema.IMAGE_PATH]: row[schema.DUPLICATE_OF] for row in removed} == {
        copy: original for copy, (original, _) in planted.items()
    }
    report = llava_mixes.load_report(dataset)
    assert report.rows_in == len(dataset["train"]) + len(removed) + report.rejected_rows
    assert report.total().removed_images == len(planted)


def test_error_policy_stops_at_the_first_bad_record_of_any_source(shared_playground: Playground) -> None:
    with pytest.raises(BadRecordError, match=r"llava_instruct_zh_600k row 4 .*turns_not_alternating"):
        load(shared_playground, "zh600k", on_bad_records="error")


def test_pretrain_rows_are_captions_with_the_token_moved_first(shared_playground: Playground) -> None:
    train = load(shared_playground, "pretrain558k")["train"]
    meta = json.loads((shared_playground.root / "blip_laion_cc_sbu_558k_meta.json").read_text())
    assert "blip_caption" in meta[0] and len(meta) != shared_playground.sources["pretrain558k"].rows
    rows = by_source_id(train)
    assert (
        rows["004644104"][schema.CONVERSATIONS][0]["value"]
        == "<image>\nRender a clear and concise summary of the photo."
    )
    assert set(train[schema.TASK]) == {"caption"} and set(train[schema.IMAGE_GROUP]) == {"llava_pretrain"}
    assert rows["004539375"][schema.IMAGE_PATH] == "00453/004539375.jpg"


def test_pretrain_reads_llava_layout_from_its_own_folder(tmp_path: Path, shared_playground: Playground) -> None:
    folder = tmp_path / "LLaVA-Pretrain"
    shutil.copytree(shared_playground.root / "LLaVA-Pretrain" / "images", folder / "images")
    shutil.copy(shared_playground.root / "blip_laion_cc_sbu_558k.json", folder)
    train = datasets.load_dataset("llava_mixes", "pretrain558k", data_dir=str(folder), split="train")
    assert len(train) == shared_playground.sources["pretrain558k"].rows - 2


def test_sharegpt4v_quirks(shared_playground: Playground) -> None:
    train = load(shared_playground, "sharegpt4v-mix665k")["train"]
    rows = by_source_id(train)
    coco_ap = next(row for row in train if "artistry" in row[schema.CONVERSATIONS][0]["value"])
    assert coco_ap[schema.CONVERSATIONS][0]["value"] == (
        "<image>\nWhat do you think is going on in this snapshot?\nIn a style that echoes artistry 0."
    )
    assert coco_ap[schema.TASK] == "detail_description"
    assert rows["Maggie_Grace2"][schema.IMAGE_PATH] == "web-celebrity/images/Maggie_Grace2.jpg"
    assert rows["Maggie_Grace2"][schema.IMAGE_GROUP] == "web-celebrity"
    assert rows["arnold-b#U00e3#U00b6cklin_island"][schema.IMAGE_PATH] == "wikiart/images/arnold-bã¶cklin_island.jpg"
    lcs = rows["005063020"]
    assert lcs[schema.IMAGE_GROUP] == "llava_pretrain" and lcs[schema.TASK] == "detail_description"
    pretrain = by_source_id(load(shared_playground, "pretrain558k")["train"])["005063020"]
    assert lcs[schema.IMAGE_SHA256] == pretrain[schema.IMAGE_SHA256]
    assert {row[schema.IMAGE_GROUP] for row in train} >= {"sam", "share_textvqa", "web-landmark", "wikiart", "gqa"}


def test_svit_mix_tasks_come_from_the_ids(shared_playground: Playground) -> None:
    train = load(shared_playground, "svit-mix665k")["train"]
    tasks = {row[schema.SOURCE_ID]: row[schema.TASK] for row in train}
    expected = {"conversation": "conversation", "complex": "complex_reasoning", "detail": "detail_description"}
    expected["referring"] = "referring_qa"
    svit = {source_id: task for source_id, task in tasks.items() if source_id.startswith("svit_")}
    assert len(svit) == 10
    assert all(task == expected[source_id.split("_")[1]] for source_id, task in svit.items())
    assert tasks["VG_100K/7920"] == "region_caption" and tasks["sharegpt_0"] == "text"


def test_svit_core_flattens_blocks_and_keeps_box_markup(shared_playground: Playground) -> None:
    train = load(shared_playground, "svit-core")["train"]
    rows = by_source_id(train)
    first = rows["conversation/7920/0"][schema.CONVERSATIONS]
    assert [turn["from"] for turn in first] == ["human", "gpt", "human", "gpt"]
    assert first[0]["value"] == "<image>\nWhat is on the left?"
    referring = [row for row in train if row[schema.TASK] == "referring_qa"]
    assert len(referring) == 4
    assert referring[0][schema.CONVERSATIONS][1]["value"] == "The <st>rail<ed> [0.2, 0.6, 0.8, 0.7] is metal."
    fallback = next(row for row in referring if row[schema.IMAGE_GROUP] == "VG_100K_2")
    assert fallback[schema.IMAGE_PATH] == "vg/VG_100K_2/90006.jpg"
    assert {row[schema.TASK] for row in train} == {
        "conversation",
        "complex_reasoning",
        "referring_qa",
        "detail_description",
    }


def test_textocr_prompt_is_a_documented_function_of_the_file_name(
    shared_playground: Playground, tmp_path: Path
) -> None:
    dataset = load(shared_playground, "textocr-gpt4v")
    train = dataset["train"]
    assert set(schema.TEXTOCR_CAPTION_FEATURES) <= set(train.features)
    for row in train:
        filename = row[schema.IMAGE_PATH].rsplit("/", 1)[1]
        human, gpt = row[schema.CONVERSATIONS]
        assert human["value"] == f"<image>\n{prompt_for(filename)}" and prompt_for(filename) in PROMPTS
        assert gpt["value"].startswith("DESCRIPTION\n") and "\n\nTEXT\n" in gpt["value"]
        assert gpt["value"] == f"DESCRIPTION\n{row['caption_image']}\n\nTEXT\n{row['caption_text']}"
        assert row["caption_condensed"]
    assert len({row[schema.CONVERSATIONS][0]["value"] for row in train}) > 1
    assert any("no discernible text" in text for text in train["caption_text"])
    reversed_dir = tmp_path / "reversed"
    shutil.copytree(shared_playground.root / "textvqa", reversed_dir / "textvqa")
    lines = (shared_playground.root / "train.jsonl").read_text().splitlines()
    (reversed_dir / "textocr-gpt4v").mkdir()
    (reversed_dir / "textocr-gpt4v" / "train.jsonl").write_text("\n".join(reversed(lines)))
    again = datasets.load_dataset("llava_mixes", "textocr-gpt4v", data_dir=str(reversed_dir), split="train")
    assert {r[schema.SOURCE_ID]: r[schema.CONVERSATIONS] for r in again} == {
        r[schema.SOURCE_ID]: r[schema.CONVERSATIONS] for r in train
    }


def test_zh600k_parquet_release_with_image_bytes(shared_playground: Playground) -> None:
    train = load(shared_playground, "zh600k")["train"]
    assert set(train[schema.LANGUAGE]) == {"zh"} and set(train[schema.IMAGE_GROUP]) == {"zh600k"}
    assert set(train[schema.TASK]) == {"conversation", "complex_reasoning", "detail_description"}
    rows = by_source_id(train)
    conversation = rows["zh_000000"]
    assert len(conversation[schema.CONVERSATIONS]) == 4 and conversation[schema.TASK] == "conversation"
    assert conversation[schema.IMAGE_PATH] == "llava_instruct_zh_600k-0000000/000000.jpg"
    stored = train.cast_column(schema.IMAGE, datasets.Image(decode=False))[0][schema.IMAGE]
    assert stored["path"] is None and hashlib.sha256(stored["bytes"]).hexdigest() == conversation[schema.IMAGE_SHA256]
    assert conversation[schema.IMAGE].size == (160, 120)
