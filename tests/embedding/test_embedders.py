from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from llava_mixes.embedding.embedders import HFVisionEmbedder, ThumbnailEmbedder, resolve_embedder
from llava_mixes.embedding.preprocess import ProcessorSteps
from llava_mixes.errors import EmbedderUnavailableError
from llava_mixes.playground.layout import synthetic_photo


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_thumbnail_finds_edited_copies_and_not_unrelated_images() -> None:
    embedder = ThumbnailEmbedder()
    rng = np.random.default_rng(1)
    photo, other = synthetic_photo(rng), synthetic_photo(rng)
    base = embedder.prepare(jpeg(photo))
    assert base.shape == (1024,) and np.isclose(np.linalg.norm(base), 1.0)
    for copy in (
        photo.resize((80, 60)),
        ImageEnhance.Brightness(photo).enhance(1.2),
        photo.crop((4, 3, 156, 117)),
    ):
        assert float(embedder.prepare(jpeg(copy, 50)) @ base) > 0.95
    assert float(embedder.prepare(jpeg(other)) @ base) < 0.8


def test_flat_images_match_each_other_only() -> None:
    embedder = ThumbnailEmbedder()
    white, grey = (
        embedder.prepare(jpeg(Image.new("RGB", (30, 30), "white"))),
        embedder.prepare(jpeg(Image.new("RGB", (50, 20), (90, 90, 90)))),
    )
    photo = embedder.prepare(jpeg(synthetic_photo(np.random.default_rng(2))))
    assert np.isclose(white @ grey, 1.0) and abs(float(white @ photo)) < 1e-5


def test_tiny_clip_checkpoint_embeds_unit_vectors(tiny_clip: Path) -> None:
    embedder = resolve_embedder(str(tiny_clip), device="cpu")
    assert isinstance(embedder, HFVisionEmbedder)
    assert embedder.dim == 32 and embedder.identity()["precision"] == "fp32"
    prepared = [embedder.prepare(jpeg(synthetic_photo(np.random.default_rng(seed)))) for seed in range(3)]
    vectors = embedder.embed(np.stack(prepared))
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    single = embedder.embed(np.stack(prepared[:1]))
    assert np.allclose(single[0], vectors[0], atol=1e-5)


def test_identity_follows_the_weights(tiny_clip: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip, copy)
    first = HFVisionEmbedder(str(copy), device="cpu").key()
    assert HFVisionEmbedder(str(copy), device="cpu", precision="bf16").key() != first
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes() + b"\0")
    assert HFVisionEmbedder(str(copy), device="cpu").key() != first


def test_default_embedder_offline_without_weights_fails_at_once_naming_both_ways_out() -> None:
    with pytest.raises(EmbedderUnavailableError) as caught:
        resolve_embedder("openai/clip-vit-large-patch14-336")
    message = str(caught.value)
    assert "hf download openai/clip-vit-large-patch14-336" in message
    assert "embedder='thumbnail'" in message


def test_pinned_commit_needs_no_lookup() -> None:
    embedder = HFVisionEmbedder("openai/clip-vit-large-patch14-336", revision="a" * 40, device="cpu")
    assert embedder.identity()["revision"] == "a" * 40
    with pytest.raises(EmbedderUnavailableError):
        embedder.load()


@pytest.fixture
def clip_processor(tmp_path: Path) -> object:
    from transformers import AutoImageProcessor, CLIPImageProcessor

    CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(tmp_path)
    return AutoImageProcessor.from_pretrained(tmp_path, backend="pil")


@pytest.mark.parametrize("size", [(480, 640), (333, 500), (900, 700)])
def test_cpu_steps_equal_the_processor_bit_for_bit(size: tuple[int, int], clip_processor: object) -> None:
    import torch

    steps = ProcessorSteps.of(clip_processor)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8))
    reference = clip_processor(images=image, return_tensors="np")["pixel_values"][0]
    mine = steps.finish(torch.from_numpy(steps.cpu_geometry(clip_processor, image))[None]).numpy()[0]
    assert np.array_equal(reference, mine)


def test_device_steps_match_the_processor_within_a_few_levels(clip_processor: object) -> None:
    steps = ProcessorSteps.of(clip_processor)
    sizes = [(640, 480), (500, 375), (340, 700), (640, 480)]
    photos = [synthetic_photo(np.random.default_rng(seed), *size) for seed, size in enumerate(sizes)]
    batch = steps.device_batch([np.array(photo) for photo in photos], "cpu").numpy()
    for photo, mine in zip(photos, batch, strict=True):
        reference = clip_processor(images=photo, return_tensors="np")["pixel_values"][0]
        levels = np.abs(reference - mine) * np.asarray(steps.std)[:, None, None] * 255
        assert levels.max() <= 4 and levels.mean() < 0.5
