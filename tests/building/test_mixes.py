"""Mixed configs, and pictures that several sources share, embedded once through the shared cache."""

from __future__ import annotations

import datasets
import pytest
from helpers import assert_schema_invariants

import llava_mixes
from llava_mixes import schema
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.playground.layout import Playground


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch sizes of every thumbnail embedder call."""
    calls: list[int] = []
    original = ThumbnailEmbedder.embed
    monkeypatch.setattr(
        ThumbnailEmbedder, "embed", lambda self, batch: calls.append(len(batch)) or original(self, batch)
    )
    return calls


def hashes(dataset: datasets.DatasetDict) -> list[str]:
    return [sha for split in dataset.values() for sha in split[schema.IMAGE_SHA256] if sha is not None]


def test_bilingual_mix_dedup_loads_and_embeds_each_picture_once(playground: Playground, embedded: list[int]) -> None:
    dataset = datasets.load_dataset(
        "llava_mixes", "mix665k+zh600k-dedup-0.8", data_dir=str(playground.root), embedder="thumbnail"
    )
    english, chinese = playground.sources["mix665k"], playground.sources["zh600k"]
    everything = datasets.concatenate_datasets([dataset["train"], dataset["removed"]])
    assert_schema_invariants(dataset["train"])
    assert len(set(everything[schema.ID])) == len(everything)
    languages = dict(zip(everything[schema.SOURCE], everything[schema.LANGUAGE], strict=True))
    assert languages == {"llava_v1_5_mix665k": "en", "llava_instruct_zh_600k": "zh"}
    assert {row[schema.IMAGE_PATH]: row[schema.DUPLICATE_OF] for row in dataset["removed"]} == {
        copy: original for copy, (original, _) in {**english.planted, **chinese.planted}.items()
    }
    report = llava_mixes.load_report(dataset)
    assert report.sources == ["mix665k", "zh600k"] and report.rows_in == english.rows + chinese.rows
    assert {f"{r.source}-{r.row_index:07d}": r.reason for r in report.rejected} == {
        **english.expected_rejections,
        **chinese.expected_rejections,
    }
    image_rows = hashes(dataset)
    assert sum(embedded) == len(set(image_rows)) == report.embedding["images"] < len(image_rows)


def test_pictures_shared_by_sources_are_embedded_once_across_configs(
    playground: Playground, embedded: list[int]
) -> None:
    configs = ["mix665k", "sharegpt4v-mix665k", "svit-mix665k", "svit-core", "textocr-gpt4v", "pretrain558k"]
    per_config: list[set[str]] = []
    for config in configs:
        dataset = datasets.load_dataset(
            "llava_mixes", f"{config}-dedup-0.8", data_dir=str(playground.root), embedder="thumbnail"
        )
        per_config.append(set(hashes(dataset)))
    union = set().union(*per_config)
    assert sum(embedded) == len(union)
    assert sum(len(contents) for contents in per_config) - len(union) >= 40  # COCO, VG, TextVQA, LLaVA-Pretrain
    assert per_config[0] & per_config[1] & per_config[2]
    assert per_config[4] <= per_config[0] and per_config[3] <= per_config[0] | per_config[2]
    assert per_config[1] & per_config[5]
