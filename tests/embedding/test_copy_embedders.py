from __future__ import annotations

import hashlib
import io
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageEnhance

from llava_mixes import add_embeddings, deduplicate, schema
from llava_mixes.embedding.cache import EmbeddingCache, ImageRef
from llava_mixes.embedding.copy import GradientsEmbedder, TorchScriptEmbedder
from llava_mixes.embedding.embedders import ThumbnailEmbedder, resolve_embedder
from llava_mixes.embedding.engines import embed_in_process
from llava_mixes.errors import BadEmbeddingError, ConfigError, EmbedderUnavailableError
from llava_mixes.playground.layout import Playground
from llava_mixes.playground.pictures import synthetic_photo

# SSCD ships TorchScript files; torch deprecates scripting them, and these tests must still build one.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

COPY_THRESHOLD = 0.80  # the gradients embedder's documented copy threshold


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def street(seed: int) -> Image.Image:
    """A 320x240 picture with edges everywhere: a colour field, windows, poles and round shapes."""
    rng = np.random.default_rng(seed)
    image = synthetic_photo(rng, 320, 240)
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        x, y = int(rng.integers(0, 300)), int(rng.integers(0, 220))
        w, h = int(rng.integers(6, 70)), int(rng.integers(6, 70))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h), fill=colour)
    return image


def test_gradients_finds_edited_copies_crops_included_where_the_thumbnail_misses_crops() -> None:
    embedder, thumbnail = GradientsEmbedder(), ThumbnailEmbedder()
    picture = street(3)
    base = embedder.prepare(jpeg(picture))
    assert base.shape == (128,) and base.dtype == np.float32 and np.isclose(np.linalg.norm(base), 1.0)
    cropped = picture.crop((26, 19, 294, 221))  # about 8% from each side
    copies = {
        "quality 50": jpeg(picture, 50),
        "resize 55%": jpeg(picture.resize((176, 132))),
        "resize 140%": jpeg(picture.resize((448, 336))),
        "crop 8%": jpeg(cropped),
        "brightness x1.2": jpeg(ImageEnhance.Brightness(picture).enhance(1.2)),
        "contrast x0.8": jpeg(ImageEnhance.Contrast(picture).enhance(0.8)),
        "grey": jpeg(picture.convert("L")),
    }
    scores = {name: float(embedder.prepare(data) @ base) for name, data in copies.items()}
    assert min(scores.values()) >= COPY_THRESHOLD, scores
    others = [float(embedder.prepare(jpeg(street(seed))) @ base) for seed in range(10, 20)]
    assert max(others) < COPY_THRESHOLD - 0.1, others
    thumb_crop = float(thumbnail.prepare(copies["crop 8%"]) @ thumbnail.prepare(jpeg(picture)))
    assert thumb_crop < scores["crop 8%"]


def test_flat_pictures_share_one_direction_orthogonal_to_every_picture() -> None:
    embedder = GradientsEmbedder()
    white = embedder.prepare(jpeg(Image.new("RGB", (40, 30), "white")))
    grey = embedder.prepare(jpeg(Image.new("RGB", (90, 20), (90, 90, 90))))
    picture = embedder.prepare(jpeg(street(4)))
    assert np.all(np.isfinite(white)) and np.isclose(float(white @ grey), 1.0)
    assert abs(float(white @ picture)) < 1e-5


def test_identity_holds_every_parameter_and_bad_parameters_name_the_value() -> None:
    identity = GradientsEmbedder().identity()
    assert identity["kind"] == "gradients" and {"size", "grid", "bins", "version", "pixels"} <= set(identity)
    keys = {GradientsEmbedder().key(), GradientsEmbedder(size=64).key(), GradientsEmbedder(grid=3).key()}
    assert len(keys) == 3 and GradientsEmbedder(bins=12).dim == 4 * 4 * 12
    for kwargs, named in (({"size": 4}, "size=4"), ({"grid": 0}, "grid=0"), ({"bins": 1.5}, "bins=1.5")):
        with pytest.raises(ConfigError, match=named):
            GradientsEmbedder(**kwargs)
    with pytest.raises(ConfigError, match="grid=30"):
        GradientsEmbedder(size=48, grid=30)


def test_gradients_vectors_go_into_the_content_keyed_cache(tmp_path: Path) -> None:
    embedder = GradientsEmbedder()
    paths = []
    for seed in range(5):
        paths.append(tmp_path / f"{seed}.jpg")
        paths[-1].write_bytes(jpeg(street(seed)))
    refs = [ImageRef(hashlib.sha256(p.read_bytes()).hexdigest(), str(p), i) for i, p in enumerate(paths)]
    cache = EmbeddingCache(tmp_path / "cache", embedder)
    embedded, changed = embed_in_process(cache, refs, None, 2, 2)
    assert embedded == 5 and changed == []
    vectors, errors = cache.vectors([ref.sha256 for ref in refs])
    expected = np.stack([embedder.prepare(p.read_bytes()) for p in paths])
    assert errors == [None] * 5 and np.allclose(vectors.astype(np.float32), expected, atol=2e-3)
    assert cache.directory.name.startswith("gradients-")


class ChannelMeans(torch.nn.Module):
    """Each image's mean per channel: shows exactly what the embedder fed the model."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.mean(dim=(2, 3))


class GreyThumbnail(torch.nn.Module):
    """A centred 16x16 thumbnail of the channel mean: a stand-in copy detector with a known behaviour."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        grey = torch.nn.functional.adaptive_avg_pool2d(pixels.mean(dim=1, keepdim=True), 16).flatten(1)
        return grey - grey.mean(dim=1, keepdim=True)


class Broken(torch.nn.Module):
    """Zero vectors for every image but the first, which is NaN."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(pixels.shape[0], 4)
        out[0] = float("nan")
        return out


def scripted(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


def test_torchscript_preprocessing_is_sscd_imagenet_mean_and_std(tmp_path: Path) -> None:
    embedder = TorchScriptEmbedder(scripted(ChannelMeans(), tmp_path / "means.torchscript.pt"), "cpu", size=32)
    assert embedder.dim == -1 and embedder.identity()["kind"] == "torchscript"
    colour = (200, 40, 120)
    prepared = embedder.prepare(jpeg(Image.new("RGB", (70, 50), colour), 100))
    assert prepared.shape == (3, 32, 32) and prepared.dtype == np.uint8
    vector = embedder.embed(np.stack([prepared]))[0]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (prepared.reshape(3, -1).mean(axis=1) / 255.0 - mean) / std
    assert embedder.dim == 3 and np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)


def test_torchscript_batches_like_single_images_and_identity_follows_the_file(tmp_path: Path) -> None:
    path = scripted(GreyThumbnail(), tmp_path / "thumb.pt")
    embedder = TorchScriptEmbedder(path, "cpu", size=64)
    prepared = np.stack([embedder.prepare(jpeg(street(seed))) for seed in range(3)])
    batch = embedder.embed(prepared)
    assert batch.shape == (3, 256) and np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert np.allclose(embedder.embed(prepared[1:2])[0], batch[1], atol=1e-5)
    first = embedder.key()
    assert TorchScriptEmbedder(path, "cpu", size=96).key() != first
    scripted(ChannelMeans(), path)
    assert TorchScriptEmbedder(path, "cpu", size=64).key() != first


def test_torchscript_refuses_missing_files_other_files_and_unusable_vectors(tmp_path: Path) -> None:
    with pytest.raises(EmbedderUnavailableError, match=r"nothing\.pt"):
        TorchScriptEmbedder(tmp_path / "nothing.pt")
    (tmp_path / "notes.pt").write_text("not a model")
    with pytest.raises(EmbedderUnavailableError, match=r"notes\.pt"):
        TorchScriptEmbedder(tmp_path / "notes.pt", "cpu").load()
    broken = TorchScriptEmbedder(scripted(Broken(), tmp_path / "broken.pt"), "cpu", size=16)
    prepared = np.stack([broken.prepare(jpeg(street(seed))) for seed in range(3)])
    with pytest.raises(BadEmbeddingError, match=r"\[0, 1, 2\]") as caught:
        broken.embed(prepared)
    assert caught.value.positions == [0, 1, 2]


def test_tiny_torchscript_model_deduplicates_a_built_config(playground: Playground, tmp_path: Path) -> None:
    model = TorchScriptEmbedder(scripted(GreyThumbnail(), tmp_path / "thumb.torchscript.pt"), "cpu", size=64)
    plain = datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(playground.root))["train"]
    embedded = add_embeddings(plain, model, batch_size=4, num_workers=2, cache_dir=tmp_path / "cache")
    result = deduplicate(embedded, threshold=0.8)
    removed = {row[schema.IMAGE_PATH]: row[schema.DUPLICATE_OF] for row in result["removed"]}
    assert removed == {copy: original for copy, (original, _) in playground.planted.items()}
    assert any(path.name.startswith("torchscript-") for path in (tmp_path / "cache" / "embeddings").iterdir())


def test_tiny_torchscript_model_through_load_dataset_with_a_dedup_config(
    playground: Playground, tmp_path: Path
) -> None:
    path = scripted(GreyThumbnail(), tmp_path / "thumb.torchscript.pt")
    # A TorchScript file is TorchScript's (a path that went the HF way would fail offline, or load no model).
    assert isinstance(resolve_embedder(str(path), device="cpu"), TorchScriptEmbedder)
    dataset = datasets.load_dataset(
        "llava_mixes", "mix665k-dedup-0.8", data_dir=str(playground.root), embedder=str(path), device="cpu"
    )
    removed = {row[schema.IMAGE_PATH]: row[schema.DUPLICATE_OF] for row in dataset["removed"]}
    assert removed == {copy: original for copy, (original, _) in playground.planted.items()}
    assert all(0.8 <= similarity <= 1.0 for similarity in dataset["removed"][schema.SIMILARITY])
