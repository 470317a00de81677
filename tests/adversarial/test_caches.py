"""Damaged cache shards and cache folders that cannot be written (issue #10, sections 2, 3 and part of 7).

A damaged shard (random bytes, a vector overwritten, truncated, emptied) is detected by its checksum, set
aside into `corrupt/`, named in the build report, and what it held is computed again: the next build gives
the same rows and decisions as before the damage. A read-only cache folder and a full disk end in one line
naming the folder, and leave no temporary file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
import torch
from dedup_builds import DEDUP, build, decisions, kept_original
from permissions import mode_bits_bind

from llava_mixes import load_report
from llava_mixes.building.report import BuildReport
from llava_mixes.cli.main import main
from llava_mixes.embedding import weights
from llava_mixes.playground.layout import Playground, write_playground
from llava_mixes.store import SET_ASIDE_DIR, TEMP_PREFIX

FEATURE = "caches and build folders"


def _reasons(report: BuildReport) -> list[tuple[int, str | None, str]]:
    return [(rejection.row_index, rejection.image_path, rejection.reason) for rejection in report.rejected]


def _one_shard(folder: Path) -> Path:
    (shard,) = folder.glob("*.arrow")
    return shard


def _embedding_shard(content_cache: Path) -> Path:
    return _one_shard(next((content_cache / "embeddings").iterdir()))


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _random_bytes(size: int) -> bytes:
    return np.random.default_rng(10).integers(0, 256, size, dtype=np.uint8).tobytes()


def _vector_offset(shard: Path, key: str) -> tuple[int, int]:
    """Where one record's float16 vector lies in the shard file, and its length in bytes."""
    table = pa.ipc.open_file(pa.memory_map(str(shard))).read_all()
    dim = table.schema.field("vector").type.list_size
    vectors = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    data = vectors[table.column("key").to_pylist().index(key)].tobytes()
    offset = shard.read_bytes().find(data)
    assert offset > 0
    return offset, len(data)


def _overwrite_vector(value: float | None) -> Callable[[Path, str], None]:
    def damage(shard: Path, key: str) -> None:
        offset, length = _vector_offset(shard, key)
        spoiled = np.full(length // 2, value, dtype=np.float16).tobytes() if value is not None else None
        _write_at(shard, offset, spoiled or _random_bytes(length))

    return damage


# Each damages the shard around the vector of `key`, an image whose vector decides that a duplicate is removed.
DAMAGE: dict[str, Callable[[Path, str], None]] = {
    "2 KB of random bytes": lambda shard, key: _write_at(shard, _vector_offset(shard, key)[0], _random_bytes(2048)),
    "a vector overwritten with NaN": _overwrite_vector(np.nan),
    "a vector overwritten with inf": _overwrite_vector(np.inf),
    "a vector overwritten with zeros": _overwrite_vector(0.0),
    "a vector overwritten with random values": _overwrite_vector(None),
    "truncated": lambda shard, _: shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2]),
    "replaced by an empty file": lambda shard, _: shard.write_bytes(b""),
}


def _assert_set_aside(repairs: list, shard: Path) -> None:
    assert [repair.file for repair in repairs] == [str(shard)]
    assert not shard.exists()
    assert (shard.parent / SET_ASIDE_DIR / shard.name).exists()


@pytest.mark.adversarial("repaired")
def test_random_bytes_in_an_image_index_shard_are_detected_and_rebuilt(playground: Playground, tmp_path: Path) -> None:
    before = build(playground, tmp_path / "hf_before", "mix665k")
    shard = _one_shard(tmp_path / "content_cache" / "image_index" / "v1")
    _write_at(shard, 1024, _random_bytes(4096))
    after = build(playground, tmp_path / "hf_after", "mix665k")
    assert decisions(after) == decisions(before)
    report = load_report(after)
    assert _reasons(report) == _reasons(load_report(before)) and len(report.rejected) == 6
    _assert_set_aside(report.cache_repairs, shard)


@pytest.mark.adversarial("repaired")
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_embedding_shard_is_set_aside_and_the_build_is_the_same(
    playground: Playground, tmp_path: Path, damage: str
) -> None:
    before = build(playground, tmp_path / "hf_before")
    shard = _embedding_shard(tmp_path / "content_cache")
    DAMAGE[damage](shard, kept_original(before)[1])
    after = build(playground, tmp_path / "hf_after")
    assert decisions(after) == decisions(before)
    report = load_report(after)
    assert report.embedding["embedded"] == report.embedding["images"] > 0
    _assert_set_aside(report.cache_repairs, shard)


def _without_checksum(shard: Path) -> Path:
    legacy = shard.with_name(shard.name.split(".")[0] + ".arrow")
    shard.rename(legacy)
    return legacy


@pytest.mark.adversarial("correct")
def test_a_shard_written_before_checksums_is_adopted_without_embedding_again(
    playground: Playground, tmp_path: Path
) -> None:
    before = build(playground, tmp_path / "hf_before")
    legacy = _without_checksum(_embedding_shard(tmp_path / "content_cache"))
    after = build(playground, tmp_path / "hf_after")
    assert decisions(after) == decisions(before)
    report = load_report(after)
    assert report.embedding["embedded"] == 0 and report.cache_repairs == []
    assert not legacy.exists() and ".crc32-" in _embedding_shard(tmp_path / "content_cache").name


@pytest.mark.adversarial("repaired")
def test_a_shard_written_before_checksums_with_a_nan_vector_is_embedded_again(
    playground: Playground, tmp_path: Path
) -> None:
    before = build(playground, tmp_path / "hf_before")
    legacy = _without_checksum(_embedding_shard(tmp_path / "content_cache"))
    _overwrite_vector(np.nan)(legacy, kept_original(before)[1])
    after = build(playground, tmp_path / "hf_after")
    assert decisions(after) == decisions(before)
    report = load_report(after)
    assert report.embedding["embedded"] == 1
    assert [repair.file for repair in report.cache_repairs] == [str(legacy)]


@pytest.mark.adversarial("repaired")
def test_a_legacy_shard_with_random_bytes_is_set_aside(playground: Playground, tmp_path: Path) -> None:
    before = build(playground, tmp_path / "hf_before", "mix665k")
    legacy = _without_checksum(_one_shard(tmp_path / "content_cache" / "image_index" / "v1"))
    _write_at(legacy, 1024, _random_bytes(4096))
    after = build(playground, tmp_path / "hf_after", "mix665k")
    assert decisions(after) == decisions(before)
    _assert_set_aside(load_report(after).cache_repairs, legacy)


def _cli(args: list[str], home: Path, preexec_fn: Callable[[], None]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": str(home),
        "HF_HOME": str(home / "hf_home"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    command = [sys.executable, "-m", "llava_mixes.cli.main", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False, preexec_fn=preexec_fn
    )


def _assert_one_clear_line(result: subprocess.CompletedProcess[str], *named: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and all(part in errors[0] for part in named), result.stderr


@pytest.mark.adversarial("error")
def test_a_read_only_empty_cache_folder_is_one_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    playground = write_playground(tmp_path / "playground")
    read_only = tmp_path / "content_cache"
    read_only.mkdir()
    read_only.chmod(0o555)
    args = ["build", "mix665k", "--data-dir", str(playground.root), "--content-cache-dir", str(read_only)]
    args += ["--cache-dir", str(tmp_path / "hf"), "--stats-json", str(tmp_path / "stats.json")]
    with mode_bits_bind():
        code = main(args)
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert code == 2 and len(errors) == 1, errors
    assert str(read_only) in errors[0] and "Permission denied" in errors[0]
    assert "Traceback" not in capsys.readouterr().err


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return apply


@pytest.mark.adversarial("error")
def test_a_full_disk_while_embedding_is_one_clear_error_and_leaves_no_temporary_file(
    playground: Playground, tmp_path: Path
) -> None:
    content_cache = tmp_path / "content_cache"
    build(playground, tmp_path / "hf", "mix665k")  # the plain rows and the image checks fit
    args = ["build", DEDUP, "--data-dir", str(playground.root), "--embedder", "thumbnail"]
    args += ["--cache-dir", str(tmp_path / "hf"), "--content-cache-dir", str(content_cache)]
    args += ["--stats-json", str(tmp_path / "stats.json")]
    result = _cli(args, tmp_path, preexec_fn=_file_size_limit(32 * 1024))
    _assert_one_clear_line(result, str(content_cache / "embeddings"), "File too large")
    assert not [path for path in content_cache.rglob(f"{TEMP_PREFIX}*")]


@pytest.mark.adversarial("error")
def test_a_full_disk_in_the_datasets_cache_is_one_clear_error(playground: Playground, tmp_path: Path) -> None:
    content_cache = tmp_path / "content_cache"
    build(playground, tmp_path / "hf_first", "mix665k")  # the image checks are cached: only datasets writes
    args = ["build", "mix665k", "--data-dir", str(playground.root), "--content-cache-dir", str(content_cache)]
    args += ["--cache-dir", str(tmp_path / "hf"), "--stats-json", str(tmp_path / "stats.json")]
    result = _cli(args, tmp_path, preexec_fn=_file_size_limit(4 * 1024))
    _assert_one_clear_line(result, str(tmp_path / "hf"), "File too large")


# Embedder files and folders (issue 21, 3: a replaced model): the embedder's identity covers its weights' content,
# and a derived build made with other weights is built again.
class GreyGrid(torch.nn.Module):
    """A centred grey thumbnail of `side` x `side` cells: a stand-in copy detector whose side changes its answer."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        grey = torch.nn.functional.adaptive_avg_pool2d(pixels.mean(dim=1, keepdim=True), self.side).flatten(1)
        return grey - grey.mean(dim=1, keepdim=True)


def _script(side: int, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(GreyGrid(side)).save(str(path))
    return path


def _dedup(playground: Playground, embedder: Path, hf_cache: Path, **kwargs: object) -> datasets.DatasetDict:
    return datasets.load_dataset(
        "llava_mixes",
        DEDUP,
        data_dir=str(playground.root),
        embedder=str(embedder),
        device="cpu",
        cache_dir=str(hf_cache),
        **kwargs,
    )


def _rebuilt(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("rebuilding")]


@pytest.mark.adversarial("reflected")
@pytest.mark.parametrize("keep_stat", [False, True], ids=["replaced", "replaced with its size and mtime put back"])
def test_a_replaced_torchscript_model_rebuilds_the_dedup_config(
    playground: Playground, tmp_path: Path, keep_stat: bool
) -> None:
    model = _script(16, tmp_path / "model.pt")
    other = _script(2, tmp_path / "other.pt")
    first = decisions(_dedup(playground, model, tmp_path / "hf"))
    stat = model.stat()
    model.write_bytes(other.read_bytes())
    if keep_stat:
        assert model.stat().st_size == stat.st_size
        os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = _dedup(playground, model, tmp_path / "hf")
    fresh = _dedup(playground, model, tmp_path / "hf_fresh", content_cache_dir=str(tmp_path / "fresh_cache"))
    assert decisions(again) == decisions(fresh) != first
    assert len(again["removed"]) == len(fresh["removed"])


@pytest.mark.adversarial("correct")
def test_a_touched_torchscript_model_reuses_the_build_and_a_deleted_one_serves_it(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = _script(16, tmp_path / "model.pt")
    first = decisions(_dedup(playground, model, tmp_path / "hf"))
    os.utime(model)
    (tmp_path / "content_cache" / "file_digests").rename(tmp_path / "digests_elsewhere")
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        assert decisions(_dedup(playground, model, tmp_path / "hf")) == first
        model.unlink()
        assert decisions(_dedup(playground, model, tmp_path / "hf")) == first
    assert _rebuilt(caplog) == []


@pytest.mark.adversarial("repaired")
def test_a_damaged_remembered_digest_is_read_again(playground: Playground, tmp_path: Path) -> None:
    model = _script(16, tmp_path / "model.pt")
    first = decisions(_dedup(playground, model, tmp_path / "hf"))
    (record,) = (tmp_path / "content_cache" / "file_digests").iterdir()
    record.write_text(record.read_text().replace('"sha256": "', '"sha256": "0'))
    weights._remembered.clear()
    assert decisions(_dedup(playground, model, tmp_path / "hf")) == first
    assert json.loads(record.read_text())["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()


def _checkpoint(tiny_clip: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoint"
    shutil.copytree(tiny_clip, folder)
    return folder


def _identity(dataset: datasets.DatasetDict) -> dict[str, object]:
    return load_report(dataset).dedup["embedder"]


@pytest.mark.adversarial("reflected")
@pytest.mark.parametrize("keep_stat", [False, True], ids=["replaced", "replaced with its size and mtime put back"])
def test_a_replaced_safetensors_file_in_a_checkpoint_folder_rebuilds_the_dedup_config(
    playground: Playground, tmp_path: Path, tiny_clip: Path, keep_stat: bool
) -> None:
    from transformers import CLIPVisionModel

    folder = _checkpoint(tiny_clip, tmp_path)
    first = _identity(_dedup(playground, folder, tmp_path / "hf", batch_size=8))
    other = CLIPVisionModel.from_pretrained(folder)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(7)))
    other.save_pretrained(tmp_path / "other")
    stat = (folder / "model.safetensors").stat()
    shutil.copy(tmp_path / "other" / "model.safetensors", folder / "model.safetensors")
    if keep_stat:
        assert (folder / "model.safetensors").stat().st_size == stat.st_size
        os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = _dedup(playground, folder, tmp_path / "hf", batch_size=8)
    fresh = _dedup(playground, folder, tmp_path / "hf_fresh", batch_size=8, content_cache_dir=str(tmp_path / "c2"))
    assert _identity(again) == _identity(fresh) != first
    assert decisions(again) == decisions(fresh)


@pytest.mark.adversarial("correct")
def test_a_checkpoint_folder_s_notes_do_not_rebuild_and_an_added_weight_file_does(
    playground: Playground, tmp_path: Path, tiny_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _checkpoint(tiny_clip, tmp_path)
    first = decisions(_dedup(playground, folder, tmp_path / "hf", batch_size=8))
    (folder / "README.md").write_text("# notes")
    (folder / ".cache").mkdir()
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        assert decisions(_dedup(playground, folder, tmp_path / "hf", batch_size=8)) == first
    assert _rebuilt(caplog) == []
    shutil.copy(folder / "model.safetensors", folder / "extra.safetensors")
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        assert decisions(_dedup(playground, folder, tmp_path / "hf", batch_size=8)) == first
    assert len(_rebuilt(caplog)) == 1 and "dedup embedder changed" in _rebuilt(caplog)[0]


@pytest.mark.adversarial("error")
def test_a_checkpoint_folder_whose_weights_were_renamed_is_one_clear_error(
    playground: Playground, tmp_path: Path, tiny_clip: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _checkpoint(tiny_clip, tmp_path)
    _dedup(playground, folder, tmp_path / "hf", batch_size=8)
    (folder / "model.safetensors").rename(folder / "weights.bak")
    argv = ["build", DEDUP, "--data-dir", str(playground.root), "--embedder", str(folder), "--device", "cpu"]
    caplog.clear()
    assert main([*argv, "--cache-dir", str(tmp_path / "hf"), "--stats-json", str(tmp_path / "s.json")]) == 2
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(folder) in errors[0], errors


@pytest.mark.adversarial("correct")
def test_a_shard_of_another_embedder_dropped_into_this_ones_folder_is_ignored(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = decisions(build(playground, tmp_path / "hf_before"))
    gradients = datasets.load_dataset(
        "llava_mixes", DEDUP, data_dir=str(playground.root), embedder="gradients", cache_dir=str(tmp_path / "hf_g")
    )
    assert decisions(gradients) != before
    folders = {path.name.split("-")[0]: path for path in (tmp_path / "content_cache" / "embeddings").iterdir()}
    for shard in folders["gradients"].glob("*.arrow"):
        shutil.copy(shard, folders["thumbnail"] / f"zz-{shard.name}")
    with caplog.at_level(logging.WARNING):
        after = build(playground, tmp_path / "hf_after")
    assert decisions(after) == before
    assert any("schema differs" in record.getMessage() for record in caplog.records)


@pytest.mark.adversarial("correct")
def test_a_deleted_content_cache_still_serves_the_build_and_rebuilds_the_same(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = decisions(build(playground, tmp_path / "hf"))
    shutil.rmtree(tmp_path / "content_cache")
    with caplog.at_level(logging.INFO, logger="llava_mixes"):
        assert decisions(build(playground, tmp_path / "hf")) == before
    assert _rebuilt(caplog) == []
    assert decisions(build(playground, tmp_path / "hf_other")) == before


@pytest.mark.adversarial("error")
def test_an_hf_home_that_is_a_file_is_one_clear_error_for_a_hub_embedder(
    playground: Playground, tmp_path: Path
) -> None:
    a_file = tmp_path / "hf_home_file"
    a_file.write_text("not a folder")
    args = ["--log-level", "error", "build", DEDUP, "--data-dir", str(playground.root)]
    args += ["--embedder", "openai/clip-vit-base-patch32", "--stats-json", str(tmp_path / "s.json")]
    env = {**os.environ, "HF_HOME": str(a_file), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["HF_DATASETS_CACHE"] = str(tmp_path / "hf")
    command = [sys.executable, "-m", "llava_mixes.cli.main", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    _assert_one_clear_line(result, "openai/clip-vit-base-patch32")
