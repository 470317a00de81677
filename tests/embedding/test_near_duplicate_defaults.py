"""The near-duplicate defaults of the embedders come from one table (issue 23, item 11): `llava-mixes list
--embedders` shows the classes' own thresholds; whether a dedup verifies its pairs is one rule, the embedder's
(`Embedder.verifies_pairs`, read by `decontam.copies.verifies` for every step); and the dedup and mix steps' cache
keys cover the modules that hold that rule and the verifier."""

from __future__ import annotations

from pathlib import Path

import pytest

from llava_mixes.building.chain import DEDUP_CODE, MIX_CODE
from llava_mixes.building.steps import code_modules
from llava_mixes.decontam.copies import verifies
from llava_mixes.embedding.copy import GradientsEmbedder, TorchScriptEmbedder
from llava_mixes.embedding.embedders import (
    EMBEDDER_GUIDE,
    HFVisionEmbedder,
    ThumbnailEmbedder,
    near_duplicate_text,
)

RULE_MODULES = {
    "llava_mixes.embedding.base",
    "llava_mixes.embedding.copy",
    "llava_mixes.embedding.embedders",
    "llava_mixes.embedding.verify",
    "llava_mixes.decontam.copies",
}


def test_the_guide_shows_each_weight_free_embedders_own_default() -> None:
    near = {name: column for name, _, _, column in EMBEDDER_GUIDE}
    assert near["thumbnail"] == f">= {ThumbnailEmbedder.near_duplicate_threshold:.2f}" == ">= 0.90"
    assert near["gradients"] == f">= {GradientsEmbedder.near_duplicate_threshold:.2f} + verification"
    assert GradientsEmbedder.near_duplicate_threshold == GradientsEmbedder.candidate_threshold


def test_the_guide_text_follows_the_class_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ThumbnailEmbedder, "near_duplicate_threshold", 0.93)
    monkeypatch.setattr(ThumbnailEmbedder, "verifies_pairs", True)
    assert near_duplicate_text(ThumbnailEmbedder) == ">= 0.93 + verification"
    monkeypatch.setattr(ThumbnailEmbedder, "near_duplicate_threshold", None)
    assert near_duplicate_text(ThumbnailEmbedder) == "-"


def test_which_embedders_verify_is_the_embedders_own_rule(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"not loaded here")
    assert verifies(GradientsEmbedder()) and verifies(TorchScriptEmbedder(model, device="cpu"))
    assert not verifies(ThumbnailEmbedder())
    assert HFVisionEmbedder.verifies_pairs is False


def test_a_truthy_non_boolean_rule_does_not_turn_verification_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ThumbnailEmbedder, "verifies_pairs", "yes")
    assert not verifies(ThumbnailEmbedder())


@pytest.mark.parametrize("code", [DEDUP_CODE, MIX_CODE], ids=["dedup step", "mix step"])
def test_the_steps_code_versions_cover_the_rule_and_the_verifier(code: tuple[str, ...]) -> None:
    assert set(code_modules(code)) >= RULE_MODULES
