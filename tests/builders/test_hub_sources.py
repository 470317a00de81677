"""The Hub releases with their pictures inside (LLaVA-NeXT-Data, LLaVA-OneVision-Data): the row rules of
`builders.hub_llava` (groups from `data_source`, text-only rows, several pictures refused, pictures only as bytes),
their folders, registry data (licences, subsets) and a property test of their `normalise`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import llava_mixes
from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.builders.hub_llava import MAX_ROW_BYTES, hub_row, stored_name
from llava_mixes.builders.llava_next import LlavaNext779k
from llava_mixes.builders.onevision import LANGUAGE_ONLY, SUBSET_OF, SUBSETS, OneVisionSingleImage, slug
from llava_mixes.building.config import CONFIG_NAMES
from llava_mixes.cli.main import main
from llava_mixes.errors import MissingDataError, RecordRejected
from llava_mixes.playground import Playground
from llava_mixes.playground.hub import QUIRKY_SUBSET, hub_record, qa, write_shard
from llava_mixes.playground.pictures import encode, synthetic_photo
from llava_mixes.sources.base import SourceRow

JPEG = encode(synthetic_photo(np.random.default_rng(5)))


def reason(record: Any) -> str:
    with pytest.raises(RecordRejected) as caught:
        hub_row(record, "fallback")
    return caught.value.reason


def test_a_row_keeps_its_data_source_as_group_and_its_bytes() -> None:
    row = hub_row(hub_record("a", JPEG, " chartqa ", qa("Is it red?", "Yes.")), "fallback")
    assert (row.image_group, row.image_bytes, row.image_path, row.source_id) == ("chartqa", JPEG, "a.jpg", "a")
    assert row.conversations[0]["value"].startswith("<image>\n") and row.task == "instruction"
    assert hub_row(hub_record("b", JPEG, None, qa("q", "a")), "fallback").image_group == "fallback"
    assert hub_row(hub_record("c", JPEG, "  ", qa("q", "a")), "fallback").image_group == "fallback"
    vqa = qa("What is it?\nAnswer the question using a single word or phrase.", "Cat")
    assert hub_row(hub_record("d", JPEG, "vqav2", vqa), "fallback").task == "vqa"


def test_a_row_without_a_picture_is_a_text_row() -> None:
    row = hub_row(hub_record("t", None, "magpie", qa("Add 2 and 3.", "5.", with_image=False)), "fallback")
    assert (row.image_bytes, row.image_path, row.task) == (None, None, "text")
    empty_struct = {**hub_record("t", None, "m", qa("Hi", "Hello", False)), "image": {"bytes": None, "path": None}}
    assert hub_row(empty_struct, "fallback").image_bytes is None
    assert reason(hub_record("t", None, "m", qa("Hi", "Hello", True))) == schema.IMAGE_TOKEN_IN_TEXT_ONLY_ROW


def test_several_pictures_are_refused_never_the_first_taken() -> None:
    two = [{"bytes": JPEG, "path": None}, {"bytes": JPEG, "path": "b.jpg"}]
    assert reason({**hub_record("m", None, "x", qa("q", "a")), "images": two}) == schema.MULTIPLE_IMAGES
    assert reason({**hub_record("m", JPEG, "x", qa("q", "a")), "images": two[:1]}) == schema.MULTIPLE_IMAGES
    one = hub_row({**hub_record("m", None, "x", qa("q", "a")), "images": [None, two[1]]}, "fallback")
    assert one.image_bytes == JPEG and one.image_path == "b.jpg"
    text = hub_row({**hub_record("m", None, "x", qa("q", "a", False)), "images": []}, "fallback")
    assert text.image_bytes is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"image": {"bytes": None, "path": "coco/x.jpg"}}, schema.MISSING_IMAGE),
        ({"image": "coco/x.jpg"}, schema.MALFORMED_RECORD),
        ({"image": {"bytes": "not bytes", "path": None}}, schema.MALFORMED_RECORD),
        ({"image": {"bytes": b"", "path": None}}, schema.UNDECODABLE_IMAGE),
        ({"images": "a.jpg"}, schema.MALFORMED_RECORD),
        ({"data_source": 7}, schema.MALFORMED_RECORD),
        ({"data_source": "a\nb"}, schema.MALFORMED_RECORD),
        ({"data_source": "x" * 121}, schema.MALFORMED_RECORD),
        ({"conversations": []}, schema.EMPTY_CONVERSATION),
        ({"id": 1.5}, schema.MALFORMED_RECORD),
    ],
)
def test_odd_values_are_rejected_with_their_reason(change: dict[str, Any], expected: str) -> None:
    assert reason({**hub_record("r", JPEG, "src", qa("q", "a")), **change}) == expected


def test_a_row_over_the_size_cap_is_rejected() -> None:
    assert reason(hub_record("h", JPEG, "s", qa("q", "x" * (MAX_ROW_BYTES + 1)))) == schema.MALFORMED_RECORD


def test_only_plain_stored_names_are_kept() -> None:
    assert stored_name("images/coco/0001.jpg") == "0001.jpg"
    assert [stored_name(name) for name in ("../..", "a/..", "/", "", None, 3, "x" * 300, "a\x00.jpg")] == [None] * 8


def test_registry_data_licences_and_subsets() -> None:
    assert LlavaNext779k.commercial_use and "apache-2.0" in LlavaNext779k.license
    assert not OneVisionSingleImage.commercial_use and "academic research" in OneVisionSingleImage.license
    assert len(SUBSETS) == len(set(SUBSETS)) == len({slug(subset) for subset in SUBSETS}) == 83
    assert set(SUBSETS) >= LANGUAGE_ONLY
    for config, subset in SUBSET_OF.items():
        source = SOURCES[config]
        assert source.family == "onevision-si" and source.data_folders == (subset,) and not source.commercial_use
        assert f"{config}-dedup-0.8" in CONFIG_NAMES
    assert SOURCES["onevision-aokvqa-cauldron-llava-format"].data_folders == ("aokvqa(cauldron,llava_format)",)


def test_list_shows_the_subsets_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not [line for line in lines if line.startswith("onevision-clevr")]
    (subsets,) = [line for line in lines if line.startswith("onevision-si's subsets")]
    assert subsets.count("onevision-") == len(SUBSETS) + 1
    assert any(line.startswith("llava-next-779k-dedup-0.8 ") for line in lines)


def test_missing_folders_are_named_with_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"LLaVA-NeXT-Data/data.*hf download lmms-lab/LLaVA-NeXT-Data"):
        LlavaNext779k().locate_files(tmp_path)
    write_shard(tmp_path / "LLaVA-OneVision-Data" / "sroie" / "train-00000-of-00001.parquet", [])
    with pytest.raises(MissingDataError, match=r"no Parquet files in .*CLEVR-Math\(MathV360K\).* and 77 more"):
        OneVisionSingleImage().locate_files(tmp_path)
    assert SOURCES["onevision-sroie"]().locate_files(tmp_path)[0].name == "train-00000-of-00001.parquet"


def test_onevision_groups_are_subsets_and_language_subsets_are_text(shared_playground: Playground) -> None:
    dataset = datasets.load_dataset("llava_mixes", "onevision-si", data_dir=str(shared_playground.root))
    train = dataset["train"]
    groups = {row[schema.SOURCE_ID]: row[schema.IMAGE_GROUP] for row in train}
    assert groups["s4o_1"] == groups["s4o_2"] == QUIRKY_SUBSET  # no data_source: the subset's folder
    assert groups["geo3k_0"] == "geo3k"
    texts = [row for row in train if row[schema.SOURCE_ID].startswith(("magpie", "mathqa"))]
    assert len(texts) == len(LANGUAGE_ONLY) and all(row[schema.IMAGE] is None for row in texts)
    assert all(row[schema.IMAGE_GROUP] is None and row[schema.TASK] == "text" for row in texts)
    report = llava_mixes.load_report(dataset)
    assert [(r.reason, r.image_group) for r in report.rejected] == [("undecodable_image", QUIRKY_SUBSET)]


@pytest.fixture(scope="module")
def shared_playground(tmp_path_factory: pytest.TempPathFactory) -> Playground:
    from llava_mixes.playground.layout import write_playground

    return write_playground(tmp_path_factory.mktemp("hub") / "playground")


TEXT = st.text(max_size=20)
TURN = st.one_of(
    st.fixed_dictionaries(
        {"from": st.sampled_from(["human", "gpt", "system", ""]), "value": st.one_of(TEXT, st.none())}
    ),
    st.none(),
    TEXT,
    st.integers(),
)
IMAGE = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.just(JPEG),
    TEXT,
    st.fixed_dictionaries(
        {"bytes": st.one_of(st.none(), st.binary(max_size=20), TEXT), "path": st.one_of(st.none(), TEXT)}
    ),
    st.integers(),
)
RECORD = st.dictionaries(
    st.sampled_from(["id", "conversations", "data_source", "image", "images", "extra"]),
    st.one_of(TEXT, st.none(), st.integers(), st.lists(TURN, max_size=4), IMAGE, st.lists(IMAGE, max_size=3)),
    max_size=6,
)


@given(st.one_of(RECORD, st.lists(TURN, max_size=2), TEXT, st.none()))
@example({**hub_record("two", None, "x", qa("q", "a")), "images": [JPEG, {"bytes": JPEG, "path": None}]})
@example({**hub_record("both", JPEG, "x", qa("q", "a")), "images": [JPEG]})
def test_normalise_gives_a_row_or_a_rejection_for_any_record(record: Any) -> None:
    started = time.monotonic()
    for source in (LlavaNext779k(), SOURCES[f"onevision-{slug(QUIRKY_SUBSET)}"]()):
        try:
            row = source.normalise(record)
        except RecordRejected as rejected:
            assert rejected.reason in schema.REJECT_REASONS and rejected.detail
            continue
        assert isinstance(row, SourceRow) and row.conversations
        assert isinstance(row.image_group, str) and 0 < len(row.image_group) <= 120
        listed = record.get("images") if isinstance(record.get("images"), list) else []
        pictures = [
            item for item in [record.get("image"), *listed] if item not in (None, {"bytes": None, "path": None})
        ]
        assert len(pictures) == (row.image_bytes is not None)  # one picture taken only when the row holds one
        assert (row.image_bytes is None) == (row.task == "text")
        if row.image_bytes is not None:
            assert isinstance(row.image_bytes, bytes) and row.image_bytes
            assert row.conversations[0]["value"].startswith(schema.IMAGE_TOKEN)
        else:
            assert all(schema.IMAGE_TOKEN not in turn["value"] for turn in row.conversations)
    assert time.monotonic() - started < 5


def test_picture_checks_are_keyed_by_content_and_reused_across_releases(shared_playground: Playground) -> None:
    from llava_mixes.sources.images import ImageIndex
    from llava_mixes.sources.normalise import SourceNormaliser

    root, cache = shared_playground.root, shared_playground.root.parent / "checks"
    first = SourceNormaliser(SOURCES["onevision-sharegpt4o"](), root, ImageIndex(cache), "skip")
    assert sum(table.num_rows for table in first.tables()) == 3 and first.index.inspected == 4
    # The whole release holds the same four pictures among its others: they are not decoded again.
    whole = SourceNormaliser(SOURCES["onevision-si"](), root, ImageIndex(cache), "skip")
    assert sum(table.num_rows for table in whole.tables()) == 85
    assert whole.index.inspected == 86 - len(LANGUAGE_ONLY) - 4
