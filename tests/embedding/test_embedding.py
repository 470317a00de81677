from __future__ import annotations

import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest

from llava_mixes import add_embeddings, schema
from llava_mixes.embedding import cache as embedding_cache
from llava_mixes.embedding.cache import EmbeddingError
from llava_mixes.embedding.embedders import ThumbnailEmbedder
from llava_mixes.playground.layout import Playground


@pytest.fixture
def base(playground: Playground) -> datasets.Dataset:
    return datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(playground.root), split="train")


class CountingThumbnail(ThumbnailEmbedder):
    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.embedded = 0
        self.fail_after = fail_after

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.embedded >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.embedded += len(batch)
        return super().embed(batch)


def test_embeddings_are_unit_vectors_and_null_for_text_rows(base: datasets.Dataset) -> None:
    result = add_embeddings(base, CountingThumbnail())
    assert result.features[schema.EMBEDDING] == schema.embedding_feature(1024)
    for row in result.select_columns([schema.IMAGE_PATH, schema.EMBEDDING]):
        if row[schema.IMAGE_PATH] is None:
            assert row[schema.EMBEDDING] is None
        else:
            assert np.isclose(np.linalg.norm(row[schema.EMBEDDING]), 1.0, atol=1e-3)


def test_each_distinct_picture_is_embedded_once_ever(base: datasets.Dataset) -> None:
    first = CountingThumbnail()
    add_embeddings(base, first, batch_size=4)
    distinct = len(set(sha for sha in base[schema.IMAGE_SHA256] if sha))
    paths = len(set(path for path in base[schema.IMAGE_PATH] if path))
    assert first.embedded == distinct < paths  # the byte-identical copy is embedded once
    second = CountingThumbnail()
    again = add_embeddings(base.shuffle(seed=0), second)
    assert second.embedded == 0
    assert len(again) == len(base)


def test_an_interrupted_run_resumes_where_it_stopped(
    base: datasets.Dataset, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedding_cache, "FLUSH_IMAGES", 8)
    interrupted = CountingThumbnail(fail_after=16)
    with pytest.raises(KeyboardInterrupt):
        add_embeddings(base, interrupted, batch_size=4, cache_dir=tmp_path)
    committed = len(embedding_cache.EmbeddingCache(tmp_path, ThumbnailEmbedder()).store)
    assert 8 <= committed <= 16
    resumed = CountingThumbnail()
    add_embeddings(base, resumed, batch_size=4, cache_dir=tmp_path)
    distinct = len(set(sha for sha in base[schema.IMAGE_SHA256] if sha))
    assert resumed.embedded == distinct - committed


def test_vectors_do_not_depend_on_batch_size_or_num_proc(base: datasets.Dataset, tmp_path: Path) -> None:
    one = add_embeddings(base, "thumbnail", batch_size=1, cache_dir=tmp_path / "a")
    many = add_embeddings(base, "thumbnail", batch_size=64, num_proc=2, cache_dir=tmp_path / "b")
    assert one[schema.EMBEDDING] == many[schema.EMBEDDING]


def test_tiny_vit_checkpoint_through_add_embeddings(base: datasets.Dataset, tiny_clip: Path) -> None:
    result = add_embeddings(base, str(tiny_clip), device="cpu", batch_size=8)
    vectors = [vector for vector in result[schema.EMBEDDING] if vector is not None]
    assert len(vectors[0]) == 32 and len(vectors) == sum(path is not None for path in base[schema.IMAGE_PATH])


def test_a_file_changed_after_the_build_is_refused(base: datasets.Dataset, playground: Playground) -> None:
    first_path = base[0][schema.IMAGE_PATH]
    shutil.copy(playground.root / base[1][schema.IMAGE_PATH], playground.root / first_path)
    with pytest.raises(EmbeddingError, match="differ from the dataset's image_sha256"):
        add_embeddings(base, "thumbnail")


def test_missing_columns_are_named(base: datasets.Dataset) -> None:
    with pytest.raises(ValueError, match="image_sha256"):
        add_embeddings(base.remove_columns(schema.IMAGE_SHA256), "thumbnail")


def test_one_process_per_device_fills_the_same_cache(base: datasets.Dataset, tmp_path: Path) -> None:
    single = add_embeddings(base, "thumbnail", cache_dir=tmp_path / "one")
    spread = add_embeddings(base, "thumbnail", device="cpu,cpu", cache_dir=tmp_path / "two")
    assert spread[schema.EMBEDDING] == single[schema.EMBEDDING]
    shards = list((tmp_path / "two" / "embeddings").glob("*/*.arrow"))
    assert len({shard.name.split("-")[1] for shard in shards}) == 2  # written by two processes


def test_ray_engine_fills_the_same_cache_as_the_local_engine(base: datasets.Dataset, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'llava_mixes[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        local = add_embeddings(base, "thumbnail", cache_dir=tmp_path / "local")
        distributed = add_embeddings(
            base, "thumbnail", engine="ray", batch_size=8, num_workers=2, cache_dir=tmp_path / "ray"
        )
    finally:
        ray.shutdown()
    assert distributed[schema.EMBEDDING] == local[schema.EMBEDDING]
    again = CountingThumbnail()
    add_embeddings(base, again, cache_dir=tmp_path / "ray")
    assert again.embedded == 0


def test_dedup_reads_vectors_from_the_cache_as_from_the_embedding_column(
    base: datasets.Dataset, tmp_path: Path
) -> None:
    from llava_mixes import deduplicate
    from llava_mixes.embedding.transform import fill_cache

    cache, _ = fill_cache(base, ThumbnailEmbedder(), tmp_path / "cache")
    from_column = deduplicate(add_embeddings(base, "thumbnail", cache_dir=tmp_path / "cache"), threshold=0.8)
    from_cache = deduplicate(base, threshold=0.8, embeddings=cache)
    assert schema.EMBEDDING not in from_cache["train"].column_names
    for split in ("train", "removed"):
        assert from_cache[split][schema.ID] == from_column[split][schema.ID]
        assert from_cache[split][schema.SIMILARITY] == from_column[split][schema.SIMILARITY]
    assert len(from_cache["removed"]) > 0

    class OtherThumbnail(ThumbnailEmbedder):
        def key(self) -> str:
            return "other-" + super().key()

    other, _ = fill_cache(base, OtherThumbnail(), tmp_path / "cache")
    assert deduplicate(base, threshold=0.8, embeddings=other)["train"]._fingerprint != from_cache["train"]._fingerprint
    empty = embedding_cache.EmbeddingCache(tmp_path / "empty", ThumbnailEmbedder())
    with pytest.raises(ValueError, match="no embedding"):
        deduplicate(base, threshold=0.8, embeddings=empty)


@pytest.mark.parametrize("kind", ["missing", "folder", "fifo"])
def test_picture_bytes_come_from_the_row_when_the_path_holds_no_regular_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "picture.jpg"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    rows = datasets.Dataset.from_dict(
        {schema.IMAGE: [{"bytes": b"row bytes", "path": None}]},
        features=datasets.Features({schema.IMAGE: datasets.Image(decode=False)}),
    )
    ref = embedding_cache.ImageRef("0" * 64, str(path), 0)
    assert embedding_cache.read_image_bytes(ref, rows) == b"row bytes"


def test_picture_bytes_come_from_the_file_when_there_is_one(tmp_path: Path) -> None:
    path = tmp_path / "picture.jpg"
    path.write_bytes(b"file bytes")
    ref = embedding_cache.ImageRef("0" * 64, str(path), 0)
    assert embedding_cache.read_image_bytes(ref, None) == b"file bytes"
    with pytest.raises(FileNotFoundError, match="no file"):
        embedding_cache.read_image_bytes(embedding_cache.ImageRef("0" * 64, str(tmp_path / "gone.jpg"), 0), None)
