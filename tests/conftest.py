"""Test isolation: offline Hub, private caches, no progress bars; shared fixtures for real small data."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest
from hypothesis import HealthCheck, settings

import llava_mixes  # noqa: F401 - registers the builder
from llava_mixes.playground.layout import Playground, write_playground

datasets.disable_progress_bars()

# Property tests: a small, fixed budget so that `make test` stays fast; no deadline (the 2-core CI is noisy).
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own datasets cache, content cache and HF home."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    monkeypatch.setenv("LLAVA_MIXES_CACHE", str(tmp_path / "content_cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    # huggingface_hub reads HF_HOME once, at import: point its file cache here too, so that a file this
    # machine has cached cannot answer for a download a test expects to fail offline.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    return tmp_path


@pytest.fixture
def playground(tmp_path: Path) -> Playground:
    return write_playground(tmp_path / "playground")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer CLIP vision tower with its image processor, saved like a real checkpoint."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    folder = tmp_path_factory.mktemp("tiny_clip")
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
