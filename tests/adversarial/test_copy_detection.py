"""Hostile and careless inputs to copy detection's verification stage: pictures that do not decode, odd sizes
and modes, blank pages, files changed since they were embedded, and edits the verifier is not built for."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from llava_mixes import schema
from llava_mixes.building.report import REPORT_FILE, BuildReport, GroupStats, removal_alarms
from llava_mixes.decontam.copies import copy_deduplicate, picture_source
from llava_mixes.embedding.copy import GradientsEmbedder
from llava_mixes.embedding.verify import CopyVerifier, VerifierSettings
from llava_mixes.embedding.verify_runs import ChangedPictureError, PictureSource, verify_pairs
from llava_mixes.errors import ConfigError
from llava_mixes.playground.copies import encode, jpeg, picture

FEATURE = "copy detection"
VERIFIER = CopyVerifier()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verdict(a: bytes, b: bytes):
    source = PictureSource({_sha(a): lambda: a, _sha(b): lambda: b})
    verdicts, stats = verify_pairs(VERIFIER, [(_sha(a), _sha(b))], source, workers=1)
    return verdicts[0], stats


PAGE = picture("page", 5)
PAGE_BYTES = encode(PAGE, "page")


@pytest.mark.adversarial("rejected")
def test_a_picture_that_does_not_decode_at_verification_is_not_a_copy_and_is_counted() -> None:
    verdict, stats = _verdict(PAGE_BYTES, b"not a picture at all")
    assert not verdict.copy and verdict.problem and "does not decode" in verdict.problem
    assert sum(stats.unverified.values()) == 1


@pytest.mark.adversarial("rejected")
def test_a_truncated_jpeg_is_not_a_copy() -> None:
    data = jpeg(PAGE.convert("RGB"), 80)
    verdict, _ = _verdict(PAGE_BYTES, data[: len(data) // 3])
    assert not verdict.copy


@pytest.mark.adversarial("rejected")
def test_a_decompression_bomb_header_is_refused_without_decoding() -> None:
    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    verdict, _ = _verdict(PAGE_BYTES, bomb)
    assert not verdict.copy and verdict.problem


@pytest.mark.adversarial("correct")
def test_two_one_pixel_pictures_are_not_copies() -> None:
    one = _png(Image.new("RGB", (1, 1), (10, 200, 30)))
    other = jpeg(Image.new("RGB", (1, 1), (10, 200, 30)), 90)
    verdict, _ = _verdict(one, other)
    assert not verdict.copy and verdict.windows == 0


@pytest.mark.adversarial("correct")
def test_blank_pages_are_never_copies_of_each_other() -> None:
    white = _png(Image.new("RGB", (612, 792), "white"))
    also_white = jpeg(Image.new("RGB", (600, 800), "white"), 70)
    verdict, _ = _verdict(white, also_white)
    assert not verdict.copy and verdict.windows < VerifierSettings().min_windows


@pytest.mark.adversarial("correct")
def test_a_blank_page_is_not_a_copy_of_a_written_page() -> None:
    verdict, _ = _verdict(PAGE_BYTES, _png(Image.new("RGB", (612, 792), "white")))
    assert not verdict.copy


@pytest.mark.adversarial("correct")
def test_a_very_wide_strip_and_its_reencoding_decode_and_get_a_verdict() -> None:
    rng = np.random.default_rng(0)
    strip = Image.fromarray(rng.integers(0, 255, (20, 20000, 3), dtype=np.uint8).repeat(1, 0), "RGB")
    verdict, _ = _verdict(_png(strip), jpeg(strip, 90))
    assert verdict.problem is None and isinstance(verdict.copy, bool)


@pytest.mark.adversarial("correct")
def test_a_transparent_png_is_a_copy_of_its_flattened_jpeg() -> None:
    rgba = PAGE.convert("RGBA")
    alpha = np.asarray(rgba).copy()
    alpha[..., 3] = np.where(alpha[..., 0] > 200, 0, 255)
    transparent = Image.fromarray(alpha, "RGBA")
    flattened = Image.alpha_composite(Image.new("RGBA", transparent.size, "white"), transparent).convert("RGB")
    verdict, _ = _verdict(_png(transparent), jpeg(flattened, 85))
    assert verdict.copy


@pytest.mark.adversarial("correct")
def test_a_palette_png_is_a_copy_of_its_rgb_jpeg() -> None:
    chart = picture("chart", 8)
    verdict, _ = _verdict(_png(chart.convert("P", palette=Image.Palette.ADAPTIVE)), jpeg(chart, 80))
    assert verdict.copy


@pytest.mark.adversarial("correct")
def test_a_grey_copy_of_a_colour_picture_is_a_copy() -> None:
    cover = picture("cover", 4)
    verdict, _ = _verdict(encode(cover, "cover"), jpeg(cover.convert("L"), 85))
    assert verdict.copy


@pytest.mark.adversarial("correct")
def test_a_16_bit_grey_copy_is_a_copy() -> None:
    grey = np.asarray(PAGE.convert("L"), dtype=np.uint16) * 257
    verdict, _ = _verdict(PAGE_BYTES, _png(Image.fromarray(grey)))
    assert verdict.copy


@pytest.mark.adversarial("correct")
def test_the_worst_edits_at_once_still_make_a_copy() -> None:
    edited = ImageEnhance.Brightness(ImageEnhance.Contrast(PAGE).enhance(1.15)).enhance(0.85)
    edited = edited.resize((PAGE.width // 2, PAGE.height // 2), Image.Resampling.LANCZOS)
    verdict, _ = _verdict(PAGE_BYTES, jpeg(edited, 40))
    assert verdict.copy


@pytest.mark.adversarial("correct")
def test_a_crop_of_ten_and_a_half_percent_per_side_is_still_found() -> None:
    width, height = PAGE.size
    box = (round(0.105 * width), round(0.105 * height), round(0.895 * width), round(0.895 * height))
    verdict, _ = _verdict(PAGE_BYTES, jpeg(PAGE.crop(box), 85))
    assert verdict.copy


@pytest.mark.adversarial("correct")
def test_a_rotated_copy_is_not_found_a_documented_limit() -> None:
    verdict, _ = _verdict(PAGE_BYTES, jpeg(PAGE.rotate(90, expand=True), 85))
    assert not verdict.copy


@pytest.mark.adversarial("correct")
def test_a_mirrored_copy_is_not_found_a_documented_limit() -> None:
    verdict, _ = _verdict(PAGE_BYTES, jpeg(PAGE.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 85))
    assert not verdict.copy


@pytest.mark.adversarial("correct")
def test_the_same_picture_twice_in_a_pair_list_is_verified_once_per_picture() -> None:
    copy = jpeg(PAGE, 60)
    source = PictureSource({_sha(PAGE_BYTES): lambda: PAGE_BYTES, _sha(copy): lambda: copy})
    pairs = [(_sha(PAGE_BYTES), _sha(copy))] * 3
    verdicts, stats = verify_pairs(VERIFIER, pairs, source, workers=2)
    assert [v.copy for v in verdicts] == [True] * 3 and stats.pictures == 2


@pytest.mark.adversarial("error")
def test_a_file_changed_since_it_was_embedded_stops_verification(tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    path.write_bytes(PAGE_BYTES)
    sha = _sha(PAGE_BYTES)
    path.write_bytes(_png(picture("page", 6)))
    source = PictureSource({sha: path.read_bytes, _sha(b"x"): lambda: b"x"})
    with pytest.raises(ChangedPictureError, match="changed since it was embedded"):
        verify_pairs(VERIFIER, [(sha, _sha(b"x"))], source, workers=1)


@pytest.mark.adversarial("error")
def test_a_file_deleted_since_it_was_embedded_stops_verification(tmp_path: Path) -> None:
    path = tmp_path / "gone.png"
    source = PictureSource({"a" * 64: path.read_bytes, _sha(PAGE_BYTES): lambda: PAGE_BYTES})
    with pytest.raises(ChangedPictureError, match="cannot be read any more"):
        verify_pairs(VERIFIER, [("a" * 64, _sha(PAGE_BYTES))], source, workers=1)


@pytest.mark.adversarial("error")
def test_bad_verifier_settings_name_the_value() -> None:
    with pytest.raises(ConfigError, match="size=300"):
        VerifierSettings(size=300)
    with pytest.raises(ConfigError, match="agree_share=2"):
        VerifierSettings(agree_share=2)


def _rows(tmp_path: Path, pictures: list[tuple[str, bytes]]) -> datasets.Dataset:
    paths, hashes = [], []
    for name, data in pictures:
        path = tmp_path / name
        if not path.exists():
            path.write_bytes(data)
        paths.append(str(path))
        hashes.append(_sha(data))
    return datasets.Dataset.from_dict(
        {
            schema.IMAGE: paths,
            schema.IMAGE_PATH: paths,
            schema.IMAGE_SHA256: hashes,
            schema.IMAGE_GROUP: ["ocr_vqa"] * len(paths),
        }
    ).cast_column(schema.IMAGE, datasets.Image(decode=False))


@pytest.mark.adversarial("correct")
def test_copy_dedup_keeps_distinct_pages_and_removes_the_same_picture_at_a_second_path(tmp_path: Path) -> None:
    pages = [encode(picture("page", seed), "page") for seed in range(4)]
    copy = jpeg(picture("page", 1), 50)
    rows = _rows(
        tmp_path, [*((f"p{i}.png", data) for i, data in enumerate(pages)), ("again.png", pages[2]), ("copy.jpg", copy)]
    )
    embedder = GradientsEmbedder()
    vectors = {_sha(data): embedder.prepare(data) for data in [*pages, copy]}
    result, stats = copy_deduplicate(rows, vectors, 0.5, "group", VERIFIER, workers=1)
    removed = result[schema.REMOVED_SPLIT]
    assert sorted(Path(p).name for p in removed[schema.IMAGE_PATH]) == ["again.png", "copy.jpg"]
    assert dict(
        zip((Path(p).name for p in removed[schema.IMAGE_PATH]), removed[schema.DUPLICATE_OF], strict=True)
    ) == {
        "again.png": str(tmp_path / "p2.png"),
        "copy.jpg": str(tmp_path / "p1.png"),
    }
    assert len(result[schema.TRAIN_SPLIT]) == 4 and stats.confirmed == 1


@pytest.mark.adversarial("correct")
def test_picture_source_reads_files_and_checks_their_hash(tmp_path: Path) -> None:
    rows = _rows(tmp_path, [("a.png", PAGE_BYTES)])
    source = picture_source(rows)
    assert source.read(_sha(PAGE_BYTES)) == PAGE_BYTES


@pytest.mark.adversarial("correct")
def test_a_group_losing_more_than_the_alarm_share_is_named_logged_and_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    report = BuildReport("mix665k-dedup-0.8", "1.0.0", ["mix665k"], dedup={"threshold": 0.8})
    report.groups = [
        GroupStats("ocr_vqa", rows=30, kept_rows=9, removed_rows=21),
        GroupStats("coco", 30, kept_rows=27, removed_rows=3),
    ]
    report.decontamination = {
        "groups": {"ocr_vqa": {"rows": 30, "contaminated": 20}},
        "benchmarks": [],
        "rows_removed": 2,
    }
    alarms = removal_alarms(report)
    assert [(a["step"], a["image_group"], a["removed"]) for a in alarms] == [
        ("dedup", "ocr_vqa", 21),
        ("decontamination", "ocr_vqa", 20),
    ]
    with caplog.at_level("WARNING"):
        report.save(tmp_path / REPORT_FILE)
    assert sum("gallery" in record.message for record in caplog.records) == 2
    assert BuildReport.load(tmp_path / REPORT_FILE).to_json()["removal_alarms"] == alarms
