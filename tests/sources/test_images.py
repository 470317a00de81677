from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llava_mixes import schema
from llava_mixes.errors import RecordRejected
from llava_mixes.sources.images import ImageIndex, contained_path, inspect_image, resolve_first, resolve_image


def picture(fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("written", ["../x.jpg", "coco/../../x.jpg", "/etc/passwd"])
def test_paths_leaving_data_dir_are_rejected(tmp_path: Path, written: str) -> None:
    with pytest.raises(RecordRejected) as caught:
        contained_path(tmp_path, written)
    assert caught.value.reason == schema.PATH_ESCAPES_DATA_DIR


def test_symlinked_folders_inside_data_dir_are_followed(tmp_path: Path) -> None:
    shared = tmp_path / "shared_coco"
    shared.mkdir()
    (shared / "a.jpg").write_bytes(picture())
    (tmp_path / "data").mkdir()
    os.symlink(shared, tmp_path / "data" / "coco")
    assert resolve_image(tmp_path / "data", "coco/a.jpg") == tmp_path / "data" / "coco" / "a.jpg"


def test_other_extensions_and_prefixes_are_tried(tmp_path: Path) -> None:
    (tmp_path / "data" / "ocr").mkdir(parents=True)
    (tmp_path / "data" / "ocr" / "b.gif").write_bytes(picture("GIF"))
    assert resolve_image(tmp_path, "ocr/b.jpg", prefixes=("", "data")) == tmp_path / "data" / "ocr" / "b.gif"
    with pytest.raises(RecordRejected) as caught:
        resolve_image(tmp_path, "ocr/none.jpg")
    assert caught.value.reason == schema.MISSING_IMAGE


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "JPEG"])
def test_images_decode_by_content_whatever_the_name(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "named.jpg"
    path.write_bytes(picture(fmt))
    check = inspect_image(path)
    assert check.ok and check.format == fmt and (check.width, check.height) == (50, 40)


@pytest.mark.parametrize("data", [picture()[:300], b"\x89PNG not really", b""])
def test_truncated_and_undecodable_images_fail_with_a_reason(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    check = inspect_image(path)
    assert check.error == schema.UNDECODABLE_IMAGE and str(path) in check.detail


def test_index_reads_each_file_version_once(tmp_path: Path) -> None:
    paths = []
    for name in "abc":
        paths.append(str(tmp_path / f"{name}.jpg"))
        Path(paths[-1]).write_bytes(picture())
    index = ImageIndex(tmp_path / "cache")
    first = index.check_many(paths)
    again = ImageIndex(tmp_path / "cache")
    assert again.check_many(paths) == first
    assert again.inspected == 0
    Path(paths[0]).write_bytes(picture("PNG"))
    os.utime(paths[0], ns=(1, 1))
    later = ImageIndex(tmp_path / "cache")
    changed = later.check_many(paths)
    assert later.inspected == 1 and changed[paths[0]].format == "PNG"
    Path(paths[1]).unlink()
    assert ImageIndex(tmp_path / "cache").check_many([paths[1]])[paths[1]].error == schema.MISSING_IMAGE


def test_one_index_reads_a_path_once_per_build(tmp_path: Path) -> None:
    path = str(tmp_path / "a.jpg")
    Path(path).write_bytes(picture())
    index = ImageIndex(tmp_path / "cache")
    index.check_many([path])
    Path(path).unlink()
    assert index.check_many([path])[path].ok


def test_image_bytes_are_checked_and_remembered_by_content(tmp_path: Path) -> None:
    index = ImageIndex(tmp_path / "cache")
    good, bad = picture("PNG"), picture()[:300]
    checks = index.check_blobs([("row-1", good), ("row-2", bad), ("row-3", good)])
    assert checks["row-1"].ok and checks["row-1"] == checks["row-3"] and checks["row-1"].format == "PNG"
    assert checks["row-2"].error == schema.UNDECODABLE_IMAGE and "row-2" in checks["row-2"].detail
    assert index.inspected == 2
    again = ImageIndex(tmp_path / "cache")
    assert again.check_blobs([("other", bad)])["other"].error == schema.UNDECODABLE_IMAGE
    assert again.inspected == 0


def test_alternative_names_are_tried_in_order_and_checked_for_escapes(tmp_path: Path) -> None:
    (tmp_path / "vg" / "VG_100K_2").mkdir(parents=True)
    (tmp_path / "vg" / "VG_100K_2" / "7.jpg").write_bytes(picture())
    names = ("vg/VG_100K/7.jpg", "vg/VG_100K_2/7.jpg")
    assert resolve_first(tmp_path, names) == ("vg/VG_100K_2/7.jpg", tmp_path / "vg" / "VG_100K_2" / "7.jpg")
    with pytest.raises(RecordRejected) as caught:
        resolve_first(tmp_path, ("vg/VG_100K_2/7.jpg", "../7.jpg"))
    assert caught.value.reason == schema.PATH_ESCAPES_DATA_DIR
