"""Exporting from a published copy (embedded pictures or paths only), where pictures are written, and bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from PIL import Image

import llava_mixes  # noqa: F401 - registers the builder
from llava_mixes import schema
from llava_mixes.errors import ConfigError, LlavaMixesError
from llava_mixes.exporters import IMAGE_TAG_MISMATCH, REMOVED_BY_DEDUP, ExportError, export
from llava_mixes.outputs import LOCK_FILE
from llava_mixes.playground import Playground
from llava_mixes.workflows.handover import run_export

CONFIG = "mix665k-dedup-0.8"


def publish(playground: Playground, tmp_path: Path, images: str) -> Path:
    """`llava-mixes publish --local-dir` of the demo config, run as a user runs it."""
    out = tmp_path / f"published-{images}"
    command = [str(Path(sys.executable).parent / "llava-mixes"), "publish", CONFIG, "--repo", "demo/llava_mixes"]
    command += ["--version", "1.0.0", "--local-dir", str(out), "--data-dir", str(playground.root)]
    command += ["--embedder", "thumbnail", "--images", images, "--no-card-views"]
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets_publish")}
    subprocess.run(command, check=True, env=env, capture_output=True)
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_published_with_bytes_writes_pictures_under_out_images(playground: Playground, tmp_path: Path) -> None:
    published = publish(playground, tmp_path, "bytes")
    out = tmp_path / "out"
    result, hub_entry = run_export(CONFIG, "llava", out, from_=published, revision="v1.0.0")
    assert hub_entry is None  # a folder, not a Hub repo
    assert result.image_root == out / "images"
    train = datasets.load_dataset(str(published), CONFIG, split="train")
    records = json.loads(result.data_file.read_text())
    assert len(records) == len(train) == result.rows
    written = set()
    for row, record in zip(train.cast_column(schema.IMAGE, datasets.Image(decode=False)), records, strict=True):
        if row[schema.IMAGE] is None:
            assert "image" not in record
            continue
        assert record["image"] == row[schema.IMAGE_PATH]  # the original layout, under out/images
        assert sha256(out / "images" / record["image"]) == row[schema.IMAGE_SHA256]
        written.add(record["image"])
    assert result.images_written == len(written)
    again, _ = run_export(CONFIG, "llava", out, from_=published)
    assert again.images_written == 0  # pictures already there with the right content are not rewritten
    with pytest.raises(ConfigError, match=r"1\.0\.0"):
        run_export(CONFIG, "llava", tmp_path / "other", from_=published, revision="v2.0.0")


def test_published_with_paths_points_at_the_original_layout(playground: Playground, tmp_path: Path) -> None:
    published = publish(playground, tmp_path, "paths")
    with pytest.raises(ConfigError, match="image_folder"):
        run_export(CONFIG, "swift", tmp_path / "refused", from_=published)
    assert not (tmp_path / "refused" / f"{CONFIG}.swift.jsonl").exists()
    result, _ = run_export(CONFIG, "swift", tmp_path / "out", from_=published, image_folder=playground.root)
    train = datasets.load_dataset(str(published), CONFIG, split="train")
    records = [json.loads(line) for line in result.data_file.read_text().splitlines()]
    assert len(records) + sum(result.skipped.values()) == len(train) and result.images_written == 0
    by_path = {row[schema.IMAGE_PATH] for row in train if row[schema.IMAGE_PATH]}
    for record in records:
        for image in record["images"]:
            assert Path(image).is_file() and os.path.relpath(image, playground.root) in by_path
    # The one picture whose file has another extension than its written name cannot be found by that name.
    assert dict(result.skipped) == {schema.MISSING_IMAGE: 1}


def test_built_config_copies_pictures_with_images_dir(playground: Playground, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result, _ = run_export(
        CONFIG,
        "llamafactory",
        out,
        data_dir=playground.root,
        images_dir=out / "pics",
        config_kwargs={"embedder": "thumbnail"},
    )
    records = json.loads(result.data_file.read_text())
    pictures = [image for record in records for image in record["images"]]
    assert pictures and all(image.startswith("pics/") and (out / image).is_file() for image in pictures)
    assert result.images_written == len(set(pictures))


def test_a_picture_outside_image_folder_is_refused_and_nothing_is_left(playground: Playground, tmp_path: Path) -> None:
    built = datasets.load_dataset("llava_mixes", CONFIG, data_dir=str(playground.root), embedder="thumbnail")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="image_folder"):
        export(built, "llava", out, image_folder=playground.root / "coco", progress=False)
    assert os.listdir(out) == [LOCK_FILE]  # neither the file nor its temporary; the lock file stays


def test_bad_arguments_name_the_allowed_values(playground: Playground, tmp_path: Path) -> None:
    built = datasets.load_dataset("llava_mixes", CONFIG, data_dir=str(playground.root), embedder="thumbnail")
    with pytest.raises(
        ConfigError, match=r"unknown format value 'sharegpt'.*'llava', 'llamafactory', 'swift', 'jsonl'"
    ):
        export(built, "sharegpt", tmp_path, image_folder=playground.root)
    with pytest.raises(ConfigError, match="removed"):
        export(built["removed"], "llava", tmp_path, image_folder=playground.root)
    with pytest.raises(ConfigError, match="exactly one"):
        run_export(CONFIG, "llava", tmp_path)
    with pytest.raises(ConfigError, match="is not a folder"):
        export(built, "llava", tmp_path, image_folder=tmp_path / "absent")


def test_removed_and_mismatched_rows_are_skipped_and_counted(playground: Playground, tmp_path: Path) -> None:
    built = datasets.load_dataset("llava_mixes", CONFIG, data_dir=str(playground.root), embedder="thumbnail")
    mixed = datasets.concatenate_datasets([built["train"], built["removed"]])
    text_row = next(i for i, row in enumerate(built["train"]) if row[schema.IMAGE] is None)

    def add_tag(row: dict, index: int) -> dict:
        if index == text_row:
            row[schema.CONVERSATIONS][0]["value"] = "<image>\n" + row[schema.CONVERSATIONS][0]["value"]
        return row

    mixed = mixed.map(add_tag, with_indices=True)
    result = export(mixed, "jsonl", tmp_path / "out", image_folder=playground.root, name="mixed", progress=False)
    assert dict(result.skipped) == {REMOVED_BY_DEDUP: len(built["removed"]), IMAGE_TAG_MISMATCH: 1}
    ids = [json.loads(line)["id"] for line in result.data_file.read_text().splitlines()]
    assert ids == [row_id for i, row_id in enumerate(built["train"][schema.ID]) if i != text_row]


def test_bytes_with_an_escaping_path_stay_inside_images_dir(tmp_path: Path) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(picture, format="GIF")
    picture = picture.getvalue()
    digest = hashlib.sha256(picture).hexdigest()
    row = {
        schema.ID: "x-0",
        schema.SOURCE_ID: "0",
        schema.IMAGE_PATH: "../../escape.gif",
        schema.IMAGE: {"bytes": picture, "path": None},
        schema.IMAGE_SHA256: digest,
        schema.CONVERSATIONS: [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A dot."}],
    }
    features = datasets.Features({key: schema.ROW_FEATURES[key] for key in row})
    dataset = datasets.Dataset.from_list([row], features=features)
    result = export(dataset, "llava", tmp_path / "out", name="one", progress=False)
    [record] = json.loads(result.data_file.read_text())
    assert record["image"] == f"by-sha256/{digest}.gif"
    assert (tmp_path / "out" / "images" / record["image"]).read_bytes() == picture
    assert not (tmp_path / "escape.gif").exists()


def test_unreadable_dataset_info_is_not_overwritten(playground: Playground, tmp_path: Path) -> None:
    built = datasets.load_dataset("llava_mixes", CONFIG, data_dir=str(playground.root), embedder="thumbnail")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dataset_info.json").write_text("{not json")
    with pytest.raises(ExportError, match=r"dataset_info\.json") as caught:
        export(built, "llamafactory", out, image_folder=playground.root, progress=False)
    assert isinstance(caught.value, LlavaMixesError)
    assert (out / "dataset_info.json").read_text() == "{not json"
