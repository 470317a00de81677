"""The Hub releases with their pictures inside, end to end on generated Hub-layout folders: the shipped recipe mixing
LLaVA-NeXT with the 665K mix removes the copies across files and bytes; decontamination, export (which writes the
pictures out) and publish work on a config whose pictures are bytes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pytest
from PIL import Image

from llava_mixes import schema
from llava_mixes.building.entry import Built, build
from llava_mixes.building.report import recipe_accounted
from llava_mixes.decontam import CONTAMINATED_SPLIT
from llava_mixes.exporters import export
from llava_mixes.playground import Playground
from llava_mixes.playground.hub import NEXT_DIR, hub_record, next_cross_copy, qa, write_shard
from llava_mixes.playground.pictures import encode
from llava_mixes.publish.check_repo import check_repo
from llava_mixes.recipes.recipe import shipped_recipes
from llava_mixes.workflows.release import release

NEXT = "llava-next-779k"
MIX_PICTURE = "coco/train2017/000000007920.jpg"
"""The first COCO picture of the playground's 665K mix, which LLaVA-NeXT's playground release re-encodes."""


def build_recipe(recipe: str | Path, playground: Playground, tmp_path: Path) -> Built:
    kwargs = {"recipe": str(recipe), "content_cache_dir": str(tmp_path / "cc")}
    return build("recipe", str(playground.root), str(tmp_path / "hf"), **kwargs)


def plant_cross_copies(playground: Playground) -> dict[str, str]:
    """A third LLaVA-NeXT shard holding a 665K GQA picture byte for byte and a re-encoded 665K VG picture;
    returns copy image_path -> the 665K file it copies."""
    root = playground.root
    gqa = sorted((root / "gqa/images").glob("*.jpg"))[0]
    vg = sorted((root / "vg/VG_100K").glob("*.jpg"))[1]
    reencoded = encode(Image.open(io.BytesIO(encode(Image.open(vg), quality=40))))
    records = [
        hub_record("next_13", gqa.read_bytes(), "gqa", qa("What is it?", "A shape.")),
        hub_record("next_14", reencoded, "vg", qa("Which colour?", "Red.")),
    ]
    write_shard(root / NEXT_DIR / "train-00002-of-00002.parquet", records)
    return {
        "llava_next_779k-0000013/next_13.jpg": gqa.relative_to(root).as_posix(),
        "llava_next_779k-0000014/next_14.jpg": vg.relative_to(root).as_posix(),
    }


def test_the_shipped_recipe_removes_the_copies_across_the_665k_files_and_next_bytes(
    playground: Playground, tmp_path: Path
) -> None:
    assert "llava-next-665k" in shipped_recipes()
    planted = plant_cross_copies(playground)
    built = build_recipe("llava-next-665k", playground, tmp_path)
    assert recipe_accounted(built.report)
    removed = {row[schema.IMAGE_PATH]: row[schema.DUPLICATE_OF] for row in built.dataset[schema.REMOVED_SPLIT]}
    cross = next_cross_copy(MIX_PICTURE)
    own = playground.sources[NEXT].planted
    expected_next = {cross.copy_image_path: cross.original_image_path, **planted}
    expected_next.update({copy: original for copy, (original, _) in own.items()})
    assert {path: of for path, of in removed.items() if path.startswith("llava_next")} == expected_next
    similarity = {row[schema.IMAGE_PATH]: row[schema.SIMILARITY] for row in built.dataset[schema.REMOVED_SPLIT]}
    assert similarity["llava_next_779k-0000013/next_13.jpg"] == pytest.approx(1.0)  # the same bytes
    kept_paths = set(built.dataset[schema.TRAIN_SPLIT][schema.IMAGE_PATH])
    assert {MIX_PICTURE, *planted.values()} <= kept_paths  # earlier source wins: the 665K's files stay
    counts = built.report.recipe["sources"][NEXT]
    assert counts["removed"] == len(expected_next) and counts["rejected"] == 3


def test_a_bytes_config_decontaminates_exports_its_pictures_and_publishes(
    playground: Playground, tmp_path: Path
) -> None:
    rows = {row["id"]: row for row in _next_rows(playground)}
    benchmark = tmp_path / "benchmark"
    benchmark.mkdir()
    (benchmark / "q.jpg").write_bytes(rows["next_0"]["image"]["bytes"])
    (benchmark / "other.jpg").write_bytes(encode(Image.new("RGB", (64, 48), (10, 200, 30))))
    built = build(
        NEXT,
        str(playground.root),
        str(tmp_path / "hf"),
        decontaminate=[str(benchmark)],
        decontaminate_embedder="gradients",
        content_cache_dir=str(tmp_path / "cc"),
    )
    contaminated = built.dataset[CONTAMINATED_SPLIT]
    assert contaminated[schema.SOURCE_ID] == ["next_0"]
    train = built.dataset[schema.TRAIN_SPLIT].cast_column(schema.IMAGE, datasets.Image(decode=False))
    assert all(row[schema.IMAGE] is None or row[schema.IMAGE]["bytes"] for row in train)

    result = export(train, "llava", tmp_path / "export", progress=False)
    records = json.loads(result.data_file.read_text())
    assert len(records) == len(train) and result.image_rows == sum(1 for row in train if row[schema.IMAGE])
    for row, record in zip(train, records, strict=True):
        if row[schema.IMAGE] is None:
            assert "image" not in record
            continue
        written = result.image_root / record["image"]
        assert written.read_bytes() == row[schema.IMAGE]["bytes"]  # the Parquet bytes, written out as they were
        assert result.image_root in written.resolve().parents

    out = tmp_path / "published"
    release(
        [NEXT, "onevision-sharegpt4o"],
        "demo/llava_mixes",
        "1.0.0",
        str(playground.root),
        local_dir=out,
        cache_dir=str(tmp_path / "hf"),
        config_kwargs={"content_cache_dir": str(tmp_path / "cc")},
    )
    assert check_repo(out) == []
    loaded = datasets.load_dataset(str(out), NEXT, split="train")
    plain = build(NEXT, str(playground.root), str(tmp_path / "hf"), content_cache_dir=str(tmp_path / "cc"))
    assert loaded[schema.ID] == plain.dataset[schema.TRAIN_SPLIT][schema.ID]
    assert loaded[schema.IMAGE_GROUP] == plain.dataset[schema.TRAIN_SPLIT][schema.IMAGE_GROUP]
    card = (out / "README.md").read_text()
    assert "apache-2.0" in card and "llava_next_779k" in card
    assert "1 of them is non-commercial: llava_onevision_sharegpt4o." in card  # the registry's commercial_use
    assert "academic research and education" in card


def _next_rows(playground: Playground) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(playground.root / NEXT_DIR / "train-00000-of-00002.parquet").to_pylist()
