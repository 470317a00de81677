"""Copy detection keeps distinct documents, through the public path (issue 26): decontamination of a 665K-layout
folder of covers, pages, charts, tables, slides, screens and diagrams against a benchmark folder holding copies
of some of them, same-template look-alikes of others and unrelated documents; and a recipe's copy dedup over
such a folder with copies planted under other paths. Both with the defaults (`gradients` candidates, verified);
and a TorchScript copy model (SSCD's kind, here a tiny stand-in) through the same verification.

The issue's numbers, before verification: `gradients` alone flagged 96% of such training pictures against such a
benchmark, and a recipe's dedup removed 356 of 400 distinct ones. Here 10x fewer pictures, the same proportions
(a tenth of the training pictures copied into a benchmark of half as many pictures as the training set).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from document_folders import write_mix665k
from PIL import Image

from llava_mixes import schema
from llava_mixes.building import build
from llava_mixes.building.report import removal_alarms
from llava_mixes.decontam import CONTAMINATED_SPLIT, MATCHED_REFERENCE
from llava_mixes.embedding.copy import TorchScriptEmbedder
from llava_mixes.playground.copies import encode, picture, plant

TEXT_KINDS = ("page", "chart", "table", "slide", "screenshot", "diagram")


def _picture(kind: str, seed: int, variant: int = 0) -> bytes:
    return encode(picture(kind, seed, variant), kind)


def _copy(data: bytes, transformation: str, seed: int) -> bytes:
    return plant(Image.open(io.BytesIO(data)).convert("RGB"), transformation, np.random.default_rng(seed))[1]


@pytest.fixture(scope="module")
def training() -> dict[str, list[bytes]]:
    """20 distinct training pictures: 8 covers (ocr_vqa, seeds 0-7) and 2 of every other document kind (textvqa,
    seeds 10 and 11, in `TEXT_KINDS` order)."""
    return {
        "ocr_vqa": [_picture("cover", seed) for seed in range(8)],
        "textvqa": [_picture(kind, 10 + index) for index in range(2) for kind in TEXT_KINDS],
    }


def _benchmark(training: dict[str, list[bytes]], tmp_path: Path) -> Path:
    """A benchmark folder (`docvqa`) of 10 pictures: copies of 2 training pictures, 4 look-alikes of training
    pictures, 4 unrelated documents; returns its parent, the folder of benchmarks."""
    benchmark = tmp_path / "benchmark" / "docvqa"
    benchmark.mkdir(parents=True)
    texts = training["textvqa"]
    pictures = {
        # copies of 2 training pictures: a cropped cover, a page resized, cropped and recoloured at once
        "copy-cover.jpg": _copy(training["ocr_vqa"][3], "crop", 1),
        "copy-page.jpg": _copy(texts[0], "combined", 2),
        # look-alikes of training pictures: same template, other words and values
        "alike-cover.jpg": _picture("cover", 5, variant=1),
        "alike-screen.png": _picture("screenshot", 10, variant=1),
        "alike-table.png": _picture("table", 11, variant=1),
        "alike-chart.png": _picture("chart", 10, variant=1),
        # unrelated documents of the same kinds
        "other-page.png": _picture("page", 40),
        "other-slide.png": _picture("slide", 41),
        "other-cover.jpg": _picture("cover", 42),
        "other-screen.png": _picture("screenshot", 43),
    }
    for name, content in pictures.items():
        (benchmark / name).write_bytes(content)
    return benchmark.parent


def test_decontamination_flags_the_copies_and_keeps_every_other_document(
    training: dict[str, list[bytes]], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    paths = write_mix665k(data, training)
    built = build("mix665k", str(data), str(tmp_path / "hf"), decontaminate=[str(_benchmark(training, tmp_path))])
    contaminated = built.dataset[CONTAMINATED_SPLIT]
    assert sorted(contaminated[schema.IMAGE_PATH]) == sorted([paths["ocr_vqa"][3], paths["textvqa"][0]])
    assert sorted(label.rsplit("/", 1)[-1] for label in contaminated[MATCHED_REFERENCE]) == [
        "copy-cover.jpg",
        "copy-page.jpg",
    ]
    assert len(built.dataset[schema.TRAIN_SPLIT]) == 18
    verification = built.report.decontamination["verification"]
    assert verification["confirmed"] == 2 and verification["pairs"] > 2
    assert removal_alarms(built.report) == []


def test_a_recipe_copy_dedup_removes_the_planted_copies_and_keeps_every_distinct_document(
    training: dict[str, list[bytes]], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    planted = {
        "ocr_vqa": [*training["ocr_vqa"], _copy(training["ocr_vqa"][6], "combined", 3)],
        "textvqa": [*training["textvqa"], _copy(training["textvqa"][4], "resize", 4), _picture("screenshot", 11, 1)],
    }
    paths = write_mix665k(data, planted)
    recipe = tmp_path / "copies.yaml"
    recipe.write_text("sources:\n  - mix665k\ndedup: {threshold: 0.7, embedder: gradients}\n")
    built = build("recipe", str(data), str(tmp_path / "hf"), recipe=str(recipe))
    removed = built.dataset[schema.REMOVED_SPLIT]
    assert dict(zip(removed[schema.IMAGE_PATH], removed[schema.DUPLICATE_OF], strict=True)) == {
        paths["ocr_vqa"][8]: paths["ocr_vqa"][6],
        paths["textvqa"][12]: paths["textvqa"][4],
    }
    assert len(built.dataset[schema.TRAIN_SPLIT]) == 21
    verification = built.report.dedup["verification"]
    assert verification["confirmed"] == 2 and verification["pairs"] > 2


class CoarseLayout(torch.nn.Module):
    """A stand-in for SSCD that cannot read: a 4x4 grey thumbnail, centred, so documents look alike to it."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        grey = torch.nn.functional.adaptive_avg_pool2d(pixels.mean(dim=1, keepdim=True), 4).flatten(1)
        return grey - grey.mean(dim=1, keepdim=True)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_torchscript_copy_model_goes_through_the_same_verification(
    training: dict[str, list[bytes]], tmp_path: Path
) -> None:
    model = tmp_path / "coarse.torchscript.pt"
    torch.jit.script(CoarseLayout()).save(str(model))
    data = tmp_path / "data"
    paths = write_mix665k(data, training)
    kwargs = {"decontaminate": [str(_benchmark(training, tmp_path))], "decontaminate_embedder": str(model)}
    built = build("mix665k", str(data), str(tmp_path / "hf"), **kwargs)
    decontamination = built.report.decontamination
    assert decontamination["embedder"]["kind"] == "torchscript"
    assert decontamination["threshold"] == TorchScriptEmbedder.candidate_threshold
    assert decontamination["verification"]["pairs"] >= 20 and decontamination["verification"]["confirmed"] == 2
    contaminated = built.dataset[CONTAMINATED_SPLIT]
    assert sorted(contaminated[schema.IMAGE_PATH]) == sorted([paths["ocr_vqa"][3], paths["textvqa"][0]])
