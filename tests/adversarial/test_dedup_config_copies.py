"""Hostile and careless inputs to a plain dedup config whose embedder verifies its pairs (issue 23, item 11):
thresholds that are not numbers in (0, 1], flat-colour pictures that every weight-free vector calls the same,
byte-identical files under other paths, a badly written or empty candidate budget, a build stopped by the budget
and then run again, a ViT (whose dedup is one stage) and a TorchScript copy model (verified) on the same path."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from document_folders import write_mix665k
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from llava_mixes import schema
from llava_mixes.building import build
from llava_mixes.building.entry import Built, configure
from llava_mixes.decontam.candidates import BUDGET_VARIABLE, TooManyCandidatesError
from llava_mixes.decontam.copies import copy_deduplicate
from llava_mixes.embedding.copy import GradientsEmbedder
from llava_mixes.embedding.verify import CopyVerifier
from llava_mixes.errors import ConfigError
from llava_mixes.playground.copies import encode, picture, plant

FEATURE = "copy detection"
DEDUP = "mix665k-dedup-0.8"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _flat(colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    return _png(Image.new("RGB", size, colour))


def _blocks(colours: list[tuple[int, int, int]], seed: int) -> bytes:
    """A flat-colour layout: coloured rectangles, no texture (the issue's falsely removed pairs)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (400, 300), colours[0])
    for colour in colours[1:]:
        left, top = int(rng.integers(0, 250)), int(rng.integers(0, 200))
        image.paste(colour, (left, top, left + int(rng.integers(60, 150)), top + int(rng.integers(40, 100))))
    return _png(image)


def _reencoded(data: bytes, seed: int) -> bytes:
    return plant(Image.open(io.BytesIO(data)).convert("RGB"), "reencode", np.random.default_rng(seed))[1]


def _dedup(data: Path, tmp_path: Path, **kwargs: object) -> Built:
    return build(DEDUP, str(data), str(tmp_path / "hf"), **{"embedder": "gradients", **kwargs})


def _removed(built: Built) -> dict[str, str]:
    removed = built.dataset[schema.REMOVED_SPLIT]
    return dict(zip(removed[schema.IMAGE_PATH], removed[schema.DUPLICATE_OF], strict=True))


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -0.2, 0.0, 1.5, True, "0.8"])
def test_a_dedup_threshold_that_is_not_a_number_in_0_1_is_refused_by_name(threshold: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dedup_threshold=.*not allowed"):
        configure(DEDUP, str(tmp_path), str(tmp_path / "hf"), embedder="gradients", dedup_threshold=threshold)


@pytest.mark.adversarial("correct")
def test_distinct_flat_colour_pictures_are_kept_and_a_byte_identical_one_removed(tmp_path: Path) -> None:
    pictures = [_flat((200, 30, 30)), _flat((30, 200, 30)), _flat((30, 30, 200), (640, 480)), _flat((250, 250, 250))]
    paths = write_mix665k(tmp_path / "data", {"textvqa": [*pictures, pictures[1]]})["textvqa"]
    built = _dedup(tmp_path / "data", tmp_path)
    assert _removed(built) == {paths[4]: paths[1]}
    assert built.report.dedup["verification"]["pairs"] >= 6


@pytest.mark.adversarial("correct")
def test_distinct_flat_colour_layouts_are_kept(tmp_path: Path) -> None:
    palette = [(240, 240, 240), (20, 60, 160), (220, 120, 20), (40, 160, 60)]
    pictures = [_blocks(palette[: 2 + seed % 3], seed) for seed in range(8)]
    write_mix665k(tmp_path / "data", {"textvqa": pictures})
    built = _dedup(tmp_path / "data", tmp_path)
    assert _removed(built) == {}


@pytest.mark.adversarial("correct")
def test_at_threshold_one_only_byte_identical_files_leave(tmp_path: Path) -> None:
    page = encode(picture("page", 3), "page")
    paths = write_mix665k(tmp_path / "data", {"textvqa": [page, _reencoded(page, 1), page]})["textvqa"]
    built = _dedup(tmp_path / "data", tmp_path, dedup_threshold=1.0)
    assert _removed(built) == {paths[2]: paths[0]}


@pytest.mark.adversarial("correct")
def test_a_copy_in_another_group_stays_under_group_scope_and_leaves_under_global_scope(tmp_path: Path) -> None:
    cover = encode(picture("cover", 4), "cover")
    groups = {"ocr_vqa": [cover, encode(picture("cover", 5), "cover")], "textvqa": [_reencoded(cover, 2)]}
    paths = write_mix665k(tmp_path / "data", groups)
    assert _removed(_dedup(tmp_path / "data", tmp_path)) == {}
    built = build(DEDUP, str(tmp_path / "data"), str(tmp_path / "hf2"), embedder="gradients", dedup_scope="global")
    assert _removed(built) == {paths["textvqa"][0]: paths["ocr_vqa"][0]}


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("value", ["lots", "-1", "1.5"])
def test_a_badly_written_budget_stops_a_dedup_config_naming_the_variable(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = [encode(picture("page", seed), "page") for seed in (1, 2)]
    write_mix665k(tmp_path / "data", {"textvqa": pages})
    monkeypatch.setenv(BUDGET_VARIABLE, value)
    with pytest.raises(ConfigError, match=BUDGET_VARIABLE):
        _dedup(tmp_path / "data", tmp_path)


@pytest.mark.adversarial("correct")
def test_a_build_stopped_by_the_budget_builds_whole_once_the_budget_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = [encode(picture("table", seed), "table") for seed in range(5)]
    paths = write_mix665k(tmp_path / "data", {"textvqa": [*pages, _reencoded(pages[2], 3)]})["textvqa"]
    monkeypatch.setenv(BUDGET_VARIABLE, "0")
    with pytest.raises(TooManyCandidatesError, match="dedup_threshold="):
        _dedup(tmp_path / "data", tmp_path)
    monkeypatch.delenv(BUDGET_VARIABLE)
    built = _dedup(tmp_path / "data", tmp_path)
    assert _removed(built) == {paths[5]: paths[2]} and len(built.dataset[schema.TRAIN_SPLIT]) == 5


@pytest.mark.adversarial("correct")
def test_a_vit_dedup_config_is_one_stage_and_records_no_verification(tmp_path: Path, tiny_clip: Path) -> None:
    pages = [encode(picture("page", seed), "page") for seed in (1, 2)]
    write_mix665k(tmp_path / "data", {"textvqa": [*pages, pages[0]]})
    built = _dedup(tmp_path / "data", tmp_path, embedder=str(tiny_clip), device="cpu")
    assert built.report.dedup["verification"] is None
    assert built.report.dedup["embedder"]["kind"] == "hf"


class CoarseLayout(torch.nn.Module):
    """A stand-in copy model that cannot read: a 4x4 grey thumbnail, centred, so documents look alike to it."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        grey = torch.nn.functional.adaptive_avg_pool2d(pixels.mean(dim=1, keepdim=True), 4).flatten(1)
        return grey - grey.mean(dim=1, keepdim=True)


@pytest.mark.adversarial("correct")
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_torchscript_copy_model_in_a_dedup_config_is_verified_too(tmp_path: Path) -> None:
    model = tmp_path / "coarse.torchscript.pt"
    torch.jit.script(CoarseLayout()).save(str(model))
    pages = [encode(picture("page", seed), "page") for seed in range(4)]
    paths = write_mix665k(tmp_path / "data", {"textvqa": [*pages, _reencoded(pages[1], 5)]})["textvqa"]
    built = _dedup(tmp_path / "data", tmp_path, embedder=str(model), device="cpu")
    assert _removed(built) == {paths[4]: paths[1]}
    assert built.report.dedup["verification"]["confirmed"] == 1


CHANNEL, SIDE = st.integers(0, 255), st.integers(24, 200)
FLAT = st.tuples(CHANNEL, CHANNEL, CHANNEL, SIDE, SIDE)
"""A flat picture: its colour, then its width and height."""


@pytest.mark.adversarial("correct")
@settings(max_examples=25)
@given(pictures=st.lists(FLAT, min_size=1, max_size=6), repeats=st.lists(st.integers(0, 5), max_size=4))
def test_a_verified_dedup_of_flat_pictures_removes_exactly_the_byte_identical_repeats(
    pictures: list[tuple[int, int, int, int, int]], repeats: list[int]
) -> None:
    files = [_flat(spec[:3], spec[3:]) for spec in pictures]
    files += [files[index % len(files)] for index in repeats]
    hashes = [hashlib.sha256(data).hexdigest() for data in files]
    rows = datasets.Dataset.from_dict(
        {
            schema.IMAGE: [{"bytes": data, "path": None} for data in files],
            schema.IMAGE_PATH: [f"flat/{index}.png" for index in range(len(files))],
            schema.IMAGE_SHA256: hashes,
            schema.IMAGE_GROUP: ["flat"] * len(files),
        },
        features=datasets.Features(
            {
                schema.IMAGE: datasets.Image(decode=False),
                schema.IMAGE_PATH: datasets.Value("string"),
                schema.IMAGE_SHA256: datasets.Value("string"),
                schema.IMAGE_GROUP: datasets.Value("string"),
            }
        ),
    )
    model = GradientsEmbedder()
    vectors = {sha: model.prepare(data) for sha, data in zip(hashes, files, strict=True)}
    splits, _ = copy_deduplicate(rows, vectors, 0.7, "group", CopyVerifier(), workers=1)
    repeated = {index for index, sha in enumerate(hashes) if sha in hashes[:index]}
    removed = {int(path.split("/")[1].split(".")[0]) for path in splits[schema.REMOVED_SPLIT][schema.IMAGE_PATH]}
    assert removed == repeated
    assert len(splits[schema.TRAIN_SPLIT]) + len(splits[schema.REMOVED_SPLIT]) == len(files)
