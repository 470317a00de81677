"""Export and reading published copies, attacked: a published copy (local folder or Hub repo: its Parquet rows,
their image structs `{path, bytes}`, its manifest and card), the output folders (`--out`, `--images-dir`) and
the flags of `export` and `report`. The copy is untrusted; the output folders are the user's, where the project
overwrites only what it wrote.

Inputs of `export --from`: the copy's folder (or ORG/NAME and `--revision`), its `llava_mixes_manifest.json`
(configs, their `train` shards with SHA-256 and size, the latest version), each shard (Parquet: the schema's
columns and `datasets` metadata), each row (`image` = `{path, bytes}`, `image_path`, `image_sha256`,
`conversations`, `duplicate_of`), its card (`README.md`, not read), and the flags `--out`, `--images-dir`,
`--image-folder`, `--format`, `--name`. Inputs of `export --data-dir` and `report`: the same output flags, and
`--data-dir`, which the output must stay out of.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from published_copy import CONFIG, MANIFEST, edit_rows, picture, publish_demo, reseal, sha256, shard_name

from llava_mixes import schema
from llava_mixes.cli.main import main
from llava_mixes.exporters import published as published_module
from llava_mixes.playground import write_playground

FEATURE = "export"

SECRET = "hf_exportLEAKmarker0123456789"
TRAIN_FILE = f"{CONFIG}.llava.json"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo playground and its `mix665k-dedup-0.8` published with embedded pictures, once per module."""
    root = tmp_path_factory.mktemp("demo")
    playground = write_playground(root / "playground")
    return playground.root, publish_demo(playground.root, root / "published", root)


@pytest.fixture
def copy(demo: tuple[Path, Path], tmp_path: Path) -> Path:
    """A fresh copy of the published demo, for this test to edit."""
    return Path(shutil.copytree(demo[1], tmp_path / "pub", symlinks=True))


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the copy that no export may read."""
    path = tmp_path / "secret.txt"
    path.write_text(f"HF_TOKEN={SECRET}\n")
    return path


@dataclass
class Ran:
    code: int
    out: str
    log: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Callable[..., Ran]:
    """`llava-mixes ARGV` in this process: its exit code, what it printed and what it logged."""

    def run(*argv: str | Path) -> Ran:
        caplog.clear()
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as stop:
            code = int(stop.code or 0)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err + caplog.text)

    return run


def export_argv(source: Path | str, out: Path, *extra: str | Path, fmt: str = "llava") -> list[str | Path]:
    return ["export", CONFIG, "--from", source, "--format", fmt, "--out", out, *extra]


def train_rows(copy: Path) -> list[dict[str, Any]]:
    return pq.read_table(copy / shard_name(CONFIG)).to_pylist()


def image_indices(rows: list[dict[str, Any]]) -> list[int]:
    return [index for index, row in enumerate(rows) if row[schema.IMAGE] is not None]


def set_image(index: int, image: dict[str, Any] | None, **columns: Any) -> Callable[[list[dict]], list[dict]]:
    """An edit that gives the `index`-th image row of the copy another image struct (and columns)."""

    def edit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        row = rows[image_indices(rows)[index]]
        row[schema.IMAGE] = image
        row.update(columns)
        return rows

    return edit


def every_file(folder: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in folder.rglob("*") if path.is_file() and not path.is_symlink()}


def assert_nothing_leaked(out: Path, *leaks: bytes) -> None:
    for path, data in every_file(out).items():
        for leak in leaks:
            assert leak not in data, f"{path} holds bytes read from outside the copy"


def records(out: Path, name: str = TRAIN_FILE) -> list[dict[str, Any]]:
    return json.loads((out / name).read_text())


# --- 1. A secret copied out: a row's picture path names a file outside the copy -------------------------------

HOSTILE_PATHS = {
    "proc_self_environ": "/proc/self/environ",
    "etc_hostname": "/etc/hostname",
    "absolute_secret": "{secret}",
    "dotdot_secret": "../secret.txt",
    "in_then_out": f"{CONFIG}/../../secret.txt",
    "nul_byte": "/etc/hostname\0.png",
    "absurd_length": "a/" * 3000 + "b.png",
    "a_folder": "/etc",
    "a_device": "/dev/zero",
}


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize("case", list(HOSTILE_PATHS))
def test_a_picture_path_outside_the_copy_is_never_read(
    copy: Path, secret: Path, tmp_path: Path, cli: Callable[..., Ran], case: str
) -> None:
    hostile = HOSTILE_PATHS[case].format(secret=secret)
    edit_rows(copy, set_image(0, {"path": hostile, "bytes": None}))
    out = tmp_path / "O"
    ran = cli(*export_argv(copy, out, "--images-dir", out / "images"))
    assert ran.code == 0, ran.log
    assert_nothing_leaked(out, SECRET.encode())
    hostile_files = {
        Path(path).read_bytes() for path in ("/proc/self/environ", "/etc/hostname") if os.path.isfile(path)
    }
    assert not hostile_files & set(every_file(out).values())
    written = records(out)
    assert len(written) == len(train_rows(copy)) - 1
    assert "skipped 1 rows (picture_outside_copy: 1)" in ran.out


@pytest.mark.adversarial("rejected")
def test_the_secret_in_the_exporting_process_environment_stays_out(copy: Path, tmp_path: Path) -> None:
    """The case as reported: `/proc/self/environ` of the export itself, with HF_TOKEN in it."""
    edit_rows(copy, set_image(0, {"path": "/proc/self/environ", "bytes": None}))
    out = tmp_path / "O"
    command = [str(Path(sys.executable).parent / "llava-mixes"), *map(str, export_argv(copy, out))]
    command += ["--images-dir", str(out / "images")]
    env = {**os.environ, "HF_TOKEN": SECRET, "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_nothing_leaked(out, SECRET.encode())
    assert "picture_outside_copy: 1" in done.stdout


@pytest.mark.adversarial("rejected")
def test_a_link_inside_the_copy_that_leads_out_is_not_followed(
    copy: Path, secret: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    (copy / "pics").mkdir()
    (copy / "pics" / "a.png").symlink_to(secret)
    (copy / "pics" / "loop.png").symlink_to(copy / "pics" / "loop.png")
    (copy / "pics" / "dangling.png").symlink_to(copy / "pics" / "absent.png")
    edit = set_image(0, {"path": "pics/a.png", "bytes": None})
    for index, name in ((1, "loop.png"), (2, "dangling.png")):
        edit = (lambda first, i, n: lambda rows: set_image(i, {"path": f"pics/{n}", "bytes": None})(first(rows)))(
            edit, index, name
        )
    edit_rows(copy, edit)
    out = tmp_path / "O"
    ran = cli(*export_argv(copy, out))
    assert ran.code == 0, ran.log
    assert_nothing_leaked(out, SECRET.encode())
    assert "picture_outside_copy: 3" in ran.out


@pytest.mark.adversarial("correct")
def test_a_picture_file_inside_the_copy_is_used_and_checked(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    """A copy may hold a picture as a file of its own (a link inside it is followed), as long as it is one."""
    data = picture("green")
    (copy / "pics").mkdir()
    (copy / "pics" / "real.png").write_bytes(data)
    (copy / "pics" / "alias.png").symlink_to(copy / "pics" / "real.png")
    first = set_image(0, {"path": str(copy / "pics" / "alias.png"), "bytes": None}, image_sha256=sha256(data))
    edit_rows(
        copy, lambda rows: set_image(1, {"path": "pics/real.png", "bytes": None}, image_sha256="0" * 64)(first(rows))
    )
    out = tmp_path / "O"
    ran = cli(*export_argv(copy, out))
    assert ran.code == 0, ran.log
    row = train_rows(copy)[image_indices(train_rows(copy))[0]]
    [record] = [record for record in records(out) if record["id"] == row[schema.SOURCE_ID]]
    assert (out / "images" / record["image"]).read_bytes() == data
    assert "image_checksum_mismatch: 1" in ran.out  # the second row's checksum is not its picture's


# --- 2. Output folders -------------------------------------------------------------------------------------------


@pytest.mark.adversarial("error")
def test_out_an_existing_file_is_one_clear_error(copy: Path, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    out = tmp_path / "O"
    out.write_text("mine")
    ran = cli(*export_argv(copy, out))
    assert ran.code == 2
    assert f"out='{out}' exists and is not a folder" in ran.log
    assert out.read_text() == "mine"


@pytest.mark.adversarial("error")
def test_report_out_an_existing_file_fails_before_building(
    demo: tuple[Path, Path], tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    out = tmp_path / "R"
    out.write_text("mine")
    started = time.monotonic()
    ran = cli("report", "mix665k", "--data-dir", demo[0], "--out", out, "--embedder", "thumbnail")
    assert ran.code == 2 and f"out='{out}' exists and is not a folder" in ran.log
    assert time.monotonic() - started < 5 and out.read_text() == "mine"
    assert not (tmp_path / "hf_datasets").exists() or not any((tmp_path / "hf_datasets").rglob("*.arrow"))


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("where", ["copy", "copy_subfolder"])
def test_out_inside_the_published_copy_is_refused(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], where: str
) -> None:
    out = copy if where == "copy" else copy / CONFIG / "export"
    before = every_file(copy)
    ran = cli(*export_argv(copy, out))
    assert ran.code == 2 and "lies inside the published copy" in ran.log
    assert every_file(copy) == before


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("where", ["inside_copy", "holding_the_copy"])
def test_images_dir_overlapping_the_copy_is_refused(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], where: str
) -> None:
    images = copy / "pics" if where == "inside_copy" else tmp_path
    before = every_file(copy)
    ran = cli(*export_argv(copy, tmp_path / "O", "--images-dir", images))
    assert ran.code == 2 and "the published copy" in ran.log
    assert every_file(copy) == before


@pytest.mark.adversarial("error")
def test_out_inside_the_data_dir_is_refused_before_building(
    demo: tuple[Path, Path], tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    data_dir = Path(shutil.copytree(demo[0], tmp_path / "data"))
    for command in (["export", CONFIG, "--format", "llava"], ["report", CONFIG]):
        ran = cli(*command, "--data-dir", data_dir, "--out", data_dir / "exported", "--embedder", "thumbnail")
        assert ran.code == 2 and "lies inside data_dir" in ran.log
        assert not (data_dir / "exported").exists()


@pytest.mark.adversarial("correct")
def test_images_dir_outside_out_holds_the_pictures_and_paths_say_so(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    out, images = tmp_path / "O", tmp_path / "elsewhere" / "pics"
    for fmt in ("llava", "llamafactory"):
        ran = cli(*export_argv(copy, out, "--images-dir", images, fmt=fmt))
        assert ran.code == 0, ran.log
    llava = records(out)
    assert all((images / record["image"]).is_file() for record in llava if "image" in record)
    assert f"--image_folder {images}" in cli(*export_argv(copy, out, "--images-dir", images)).out
    factory = records(out, f"{CONFIG}.llamafactory.json")
    assert all((images / path).is_file() for record in factory for path in record["images"])
    assert not (out / "images").exists()


@pytest.mark.adversarial("correct")
def test_out_a_link_to_a_folder_writes_in_that_folder(copy: Path, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    ran = cli(*export_argv(copy, tmp_path / "link"))
    assert ran.code == 0, ran.log
    assert (tmp_path / "real" / TRAIN_FILE).is_file() and (tmp_path / "link").is_symlink()


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("kind", ["dangling", "loop", "to_a_file"])
def test_out_a_broken_link_is_one_clear_error(copy: Path, tmp_path: Path, cli: Callable[..., Ran], kind: str) -> None:
    link = tmp_path / "O"
    target = {"dangling": tmp_path / "absent", "loop": link, "to_a_file": tmp_path / "file"}[kind]
    (tmp_path / "file").write_text("mine")
    link.symlink_to(target)
    ran = cli(*export_argv(copy, link))
    assert ran.code == 2 and f"out='{link}'" in ran.log
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "absent").exists()


@pytest.mark.adversarial("correct")
def test_a_second_export_into_the_same_out_overwrites_only_its_own_files(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    out = tmp_path / "O"
    (out / "images" / "coco" / "train2017").mkdir(parents=True)
    first_path = train_rows(copy)[image_indices(train_rows(copy))[0]][schema.IMAGE_PATH]
    (out / "images" / first_path).write_bytes(b"the user's own file")
    (out / "notes.txt").write_text("mine")
    assert cli(*export_argv(copy, out)).code == 0
    first = (out / TRAIN_FILE).read_bytes()
    edit_rows(copy, lambda rows: rows[:-1])
    ran = cli(*export_argv(copy, out))
    assert ran.code == 0, ran.log
    assert (out / TRAIN_FILE).read_bytes() != first  # the export's own file, rewritten
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "images" / first_path).read_bytes() == b"the user's own file"
    [record] = [
        r for r in records(out) if r.get("image", "").endswith(Path(first_path).suffix) and "by-sha256" in r["image"]
    ][:1]
    assert (out / "images" / record["image"]).read_bytes() != b"the user's own file"


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("change", ["edited", "never_written", "a_folder", "a_link"])
def test_a_data_file_llava_mixes_did_not_write_is_never_overwritten(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], change: str
) -> None:
    out = tmp_path / "O"
    if change == "edited":
        assert cli(*export_argv(copy, out)).code == 0
        (out / TRAIN_FILE).write_text("[] edited by the user")
    elif change == "never_written":
        out.mkdir()
        (out / TRAIN_FILE).write_text("the user's own")
    elif change == "a_folder":
        (out / TRAIN_FILE).mkdir(parents=True)
    else:
        out.mkdir()
        (tmp_path / "target.json").write_text("linked")
        (out / TRAIN_FILE).symlink_to(tmp_path / "target.json")
    before = every_file(tmp_path / "O")
    ran = cli(*export_argv(copy, out))
    assert ran.code == 2 and f"{out / TRAIN_FILE} exists and llava-mixes did not write it" in ran.log
    after = every_file(tmp_path / "O")
    assert {k: v for k, v in after.items() if ".llava_mixes" not in k} == {
        k: v for k, v in before.items() if ".llava_mixes" not in k
    }
    if change == "a_link":
        assert (tmp_path / "target.json").read_text() == "linked"


@pytest.mark.adversarial("error")
def test_a_dataset_info_entry_llava_mixes_did_not_write_is_kept(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    out = tmp_path / "O"
    out.mkdir()
    mine = {CONFIG: {"file_name": "mine.json"}, "other": {"file_name": "other.json"}}
    (out / "dataset_info.json").write_text(json.dumps(mine))
    ran = cli(*export_argv(copy, out, fmt="llamafactory"))
    assert ran.code == 2 and f"already has an entry '{CONFIG}'" in ran.log
    assert json.loads((out / "dataset_info.json").read_text()) == mine
    assert not (out / f"{CONFIG}.llamafactory.json").exists()
    ran = cli(*export_argv(copy, out, "--name", "mine2", fmt="llamafactory"))
    assert ran.code == 0, ran.log
    assert set(json.loads((out / "dataset_info.json").read_text())) == {CONFIG, "other", "mine2"}
    assert cli(*export_argv(copy, out, "--name", "mine2", fmt="llamafactory")).code == 0  # its own entry: replaced


@pytest.mark.adversarial("error")
def test_a_folder_in_images_dir_that_links_out_is_refused(
    copy: Path, demo: tuple[Path, Path], tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    """A user who linked `images/coco` to their data, to save space, must not get pictures written there."""
    data = Path(shutil.copytree(demo[0], tmp_path / "data"))
    out = tmp_path / "O"
    (out / "images").mkdir(parents=True)
    (out / "images" / "coco").symlink_to(data / "coco")
    before = every_file(data)
    ran = cli(*export_argv(copy, out))
    assert ran.code == 2 and "symbolic link leading out of images_dir" in ran.log
    assert every_file(data) == before and not (out / TRAIN_FILE).exists()


# --- 3. A folder that is not a published copy, or lacks the config ---------------------------------------------


@pytest.mark.adversarial("error")
def test_from_a_folder_that_is_not_a_copy_names_it(
    demo: tuple[Path, Path], tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    ran = cli(*export_argv(demo[0], tmp_path / "O"))
    assert ran.code == 2
    assert f"{demo[0]} is not a copy published by llava-mixes: it has no {MANIFEST}" in ran.log
    assert not (tmp_path / "O").exists()


@pytest.mark.adversarial("error")
def test_from_a_copy_without_that_config_names_the_configs_it_holds(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    ran = cli("export", "mix665k", "--from", copy, "--format", "llava", "--out", tmp_path / "O")
    assert ran.code == 2
    assert f"{copy} holds no config 'mix665k'; it holds ['{CONFIG}']" in ran.log


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("config", ["../mix665k", "x/../../ESC", "", ".hidden", "a" * 300])
def test_a_config_name_that_is_not_a_name_is_refused(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], config: str
) -> None:
    ran = cli("export", config, "--from", copy, "--format", "llava", "--out", tmp_path / "O")
    assert ran.code == 2 and "config" in ran.log
    assert not list(tmp_path.glob("**/ESC*"))


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("kind", ["loop", "a_file", "empty_name", "dot_slash_absent"])
def test_from_a_path_that_is_no_folder_is_one_clear_error(tmp_path: Path, cli: Callable[..., Ran], kind: str) -> None:
    source: str | Path
    if kind == "loop":
        source = tmp_path / "loop"
        source.symlink_to(source)
    elif kind == "a_file":
        source = tmp_path / "file.parquet"
        source.write_bytes(b"PAR1")
    elif kind == "empty_name":
        source = ""
    else:
        source = "./absent"
    ran = cli(*export_argv(source, tmp_path / "O"))
    assert ran.code == 2 and "Traceback" not in ran.log
    assert repr(str(source)) in ran.log or str(source) in ran.log


# --- 4. A Hub copy: offline, unreachable, and its rows ---------------------------------------------------------


@pytest.mark.adversarial("error")
def test_from_a_hub_repo_offline_names_the_repo_and_the_ways_out(tmp_path: Path, cli: Callable[..., Ran]) -> None:
    ran = cli(*export_argv("demo/llava_mixes", tmp_path / "O"))
    assert ran.code == 2
    assert "demo/llava_mixes" in ran.log and "HF_HUB_OFFLINE" in ran.log and "--from D" in ran.log


@pytest.fixture
def dead_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Hub endpoint is a closed local port and offline mode is off, for this test only."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    yield endpoint
    assert time.monotonic() - start < 5.0, "the error took too long to come"


@pytest.mark.adversarial("error")
def test_from_a_hub_repo_without_network_names_the_endpoint_and_the_ways_out(
    tmp_path: Path, cli: Callable[..., Ran], dead_endpoint: str
) -> None:
    ran = cli(*export_argv("demo/llava_mixes", tmp_path / "O", "--revision", "v1.0.0"))
    assert ran.code == 2
    assert "demo/llava_mixes@v1.0.0" in ran.log and f"the Hub at {dead_endpoint} is unreachable" in ran.log
    assert "HF_HUB_OFFLINE=1" in ran.log


def serve_as_hub(monkeypatch: pytest.MonkeyPatch, copy: Path) -> list[str]:
    """The network edge: `hf_hub_download` answers from `copy`'s files (the repo at any revision)."""
    asked: list[str] = []

    def download(repo_id: str, filename: str, *, repo_type: str, revision: str | None = None) -> str:
        assert repo_type == "dataset"
        asked.append(filename)
        path = copy / filename
        if not path.is_file():
            from huggingface_hub.errors import LocalEntryNotFoundError

            raise LocalEntryNotFoundError(f"{filename} is not in the cache")
        return str(path)

    monkeypatch.setattr(published_module, "hf_hub_download", download)
    return asked


@pytest.mark.adversarial("correct")
def test_a_hub_copy_exports_like_the_same_local_copy(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(*export_argv(copy, tmp_path / "local")).code == 0
    asked = serve_as_hub(monkeypatch, copy)
    ran = cli(*export_argv("demo/llava_mixes", tmp_path / "hub", "--revision", "v1.0.0"))
    assert ran.code == 0, ran.log
    assert asked == [MANIFEST, shard_name(CONFIG)]  # the manifest and the config's train shard; never the card
    assert records(tmp_path / "hub") == records(tmp_path / "local")


@pytest.mark.adversarial("rejected")
def test_a_hub_copy_row_naming_a_local_file_is_skipped(
    copy: Path, secret: Path, tmp_path: Path, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hub copy's paths name nothing on this machine: not even a file that happens to be there."""
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(picture())
    edit_rows(copy, set_image(0, {"path": str(secret), "bytes": None}))
    edit_rows(copy, set_image(1, {"path": str(tmp_path / "pics" / "a.png"), "bytes": None}))
    serve_as_hub(monkeypatch, copy)
    ran = cli(*export_argv("demo/llava_mixes", tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert_nothing_leaked(tmp_path / "O", SECRET.encode())
    assert "picture_not_stored: 2" in ran.out


@pytest.mark.adversarial("error")
def test_a_hub_copy_whose_shard_does_not_match_its_manifest_is_refused(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    shard = copy / shard_name(CONFIG)
    shard.write_bytes(shard.read_bytes()[:-100] + bytes(100))
    serve_as_hub(monkeypatch, copy)
    ran = cli(*export_argv("demo/llava_mixes", tmp_path / "O"))
    assert ran.code == 2 and "does not match the checksum its manifest records" in ran.log


# --- The pictures a copy holds ------------------------------------------------------------------------------------


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb's shape) with one tiny data chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


BAD_BYTES = {
    "not_a_picture": b"HF_TOKEN=hf_not_a_picture\n",
    "empty": b"",
    "truncated_png": picture("blue", (64, 64))[:60],
    "decompression_bomb": png_header_claiming(40000, 40000),
    "random_20_mib": os.urandom(20 << 20),
}


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize("case", list(BAD_BYTES))
def test_picture_bytes_that_do_not_decode_skip_their_row(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], case: str
) -> None:
    data = BAD_BYTES[case]
    edit_rows(copy, set_image(0, {"path": "x.png", "bytes": data}, image_sha256=sha256(data)))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert "undecodable_image: 1" in ran.out and len(records(tmp_path / "O")) == len(train_rows(copy)) - 1
    if data:
        assert data not in every_file(tmp_path / "O").values()


@pytest.mark.adversarial("rejected")
def test_picture_bytes_that_are_not_their_checksum_skip_their_row(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    """A bit flip in a shard whose manifest was resealed, or bytes swapped by hand: the row's own checksum says so."""
    edit_rows(copy, set_image(0, {"path": "x.png", "bytes": picture("purple")}))
    edit_rows(copy, set_image(1, {"path": "y.png", "bytes": picture("olive")}, image_sha256=None))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert "image_checksum_mismatch: 2" in ran.out
    assert picture("purple") not in every_file(tmp_path / "O").values()


@pytest.mark.adversarial("rejected")
def test_a_picture_over_the_size_limit_is_not_read(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llava_mixes.exporters import pictures

    data = picture("white", (300, 300), "BMP")
    monkeypatch.setattr(pictures, "MAX_PICTURE_BYTES", len(data) - 1)
    edit_rows(copy, set_image(0, {"path": "x.bmp", "bytes": data}, image_sha256=sha256(data)))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0 and "picture_too_large: 1" in ran.out


@pytest.mark.adversarial("rejected")
def test_a_row_with_neither_bytes_nor_path_is_skipped(copy: Path, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    first = set_image(0, {"path": None, "bytes": None})
    edit_rows(copy, lambda rows: set_image(1, None, image_path=None)(first(rows)))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert "image_tag_mismatch: 1" in ran.out and "picture_not_stored: 1" in ran.out


@pytest.mark.adversarial("error")
def test_a_copy_of_paths_without_image_folder_names_the_flag(
    demo: tuple[Path, Path], tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    paths_copy = publish_demo(demo[0], tmp_path / "paths", tmp_path, images="paths")
    ran = cli(*export_argv(paths_copy, tmp_path / "O"))
    assert ran.code == 2 and "image_folder" in ran.log
    assert not (tmp_path / "O" / TRAIN_FILE).exists()
    ran = cli(*export_argv(paths_copy, tmp_path / "O", "--image-folder", demo[0]))
    assert ran.code == 0 and "missing_image: 1" in ran.out  # the one picture saved under another extension


HOSTILE_IMAGE_PATHS = {
    "dotdot": "../../../escape.png",
    "absolute": "/tmp/escape.png",
    "nul": "coco/a\0b.png",
    "absurd": "x" * 5000 + ".png",
    "hidden": ".llava_mixes_outputs.json",
    "spoofed_content_name": "by-sha256/" + "0" * 64 + ".png",
    "drive": "C:/escape.png",
    "control": "coco/a\nb.png",
}


@pytest.mark.adversarial("correct")
@pytest.mark.parametrize("case", list(HOSTILE_IMAGE_PATHS))
def test_an_image_path_that_cannot_name_a_file_writes_by_content(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], case: str
) -> None:
    data = picture("teal")
    edit_rows(
        copy,
        set_image(
            0, {"path": "p.png", "bytes": data}, image_sha256=sha256(data), image_path=HOSTILE_IMAGE_PATHS[case]
        ),
    )
    out = tmp_path / "O"
    ran = cli(*export_argv(copy, out))
    assert ran.code == 0, ran.log
    row = train_rows(copy)[image_indices(train_rows(copy))[0]]
    [record] = [record for record in records(out) if record["id"] == row[schema.SOURCE_ID]]
    assert record["image"].startswith(f"by-sha256/{sha256(data)}.")
    assert (out / "images" / record["image"]).read_bytes() == data
    inside = {str(path) for path in out.rglob("*")}
    assert not [path for path in tmp_path.rglob("*escape*") if str(path) not in inside]


@pytest.mark.adversarial("correct")
def test_image_paths_that_collide_each_get_their_own_file(copy: Path, tmp_path: Path, cli: Callable[..., Ran]) -> None:
    red, blue, green = picture("red"), picture("blue"), picture("green")

    def edit(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, (data, path) in enumerate([(red, "c/a.png"), (blue, "c/a.png"), (green, "c/a.png/b.png")]):
            rows = set_image(index, {"path": None, "bytes": data}, image_sha256=sha256(data), image_path=path)(rows)
        return rows

    edit_rows(copy, edit)
    out = tmp_path / "O"
    ran = cli(*export_argv(copy, out))
    assert ran.code == 0, ran.log
    rows, exported = train_rows(copy), records(out)  # every row exported, in order
    written = [exported[i]["image"] for i in image_indices(rows)[:3]]
    assert [(out / "images" / path).read_bytes() for path in written] == [red, blue, green]
    assert written[0] == "c/a.png" and written[1].startswith("by-sha256/") and written[2].startswith("by-sha256/")


# --- The copy's files: shards, manifest, card ---------------------------------------------------------------------


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("damage", ["truncated", "emptied", "bit_flip", "removed"])
def test_a_damaged_shard_is_refused_by_its_checksum(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], damage: str
) -> None:
    shard = copy / shard_name(CONFIG)
    data = shard.read_bytes()
    if damage == "removed":
        shard.unlink()
    else:
        shard.write_bytes(
            {"truncated": data[: len(data) // 2], "emptied": b""}.get(
                damage, data[:100] + bytes([data[100] ^ 1]) + data[101:]
            )
        )
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 2 and shard_name(CONFIG) in ran.log
    assert not (tmp_path / "O" / TRAIN_FILE).exists()


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("content", ["not_parquet", "truncated_parquet", "wrong_row_count"])
def test_a_resealed_shard_that_is_not_the_copys_parquet_is_refused(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], content: str
) -> None:
    """A hostile publisher can make the manifest match any bytes: the Parquet reader is the next check."""
    shard = copy / shard_name(CONFIG)
    if content == "not_parquet":
        shard.write_bytes(b"PAR1 this is no parquet PAR1")
    elif content == "truncated_parquet":
        shard.write_bytes(shard.read_bytes()[:-64])
    reseal(copy)
    if content == "wrong_row_count":
        manifest = json.loads((copy / MANIFEST).read_text())
        manifest["configs"][CONFIG]["splits"]["train"]["num_examples"] += 1
        (copy / MANIFEST).write_text(json.dumps(manifest))
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 2 and "Traceback" not in ran.log and str(copy) in ran.log


def _manifest_edit(name: str, copy: Path, secret: Path) -> None:
    manifest_path = copy / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["configs"][CONFIG]
    shard = shard_name(CONFIG)
    if name == "not_json":
        manifest_path.write_text("{not json")
        return
    if name == "a_list":
        manifest = [manifest]
    elif name == "no_configs":
        del manifest["configs"]
    elif name == "config_not_a_mapping":
        manifest["configs"][CONFIG] = "train.parquet"
    elif name == "shard_dotdot":
        entry["splits"]["train"]["files"] = ["../outside.parquet"]
        entry["files"]["../outside.parquet"] = entry["files"][shard]
    elif name == "shard_absolute":
        entry["splits"]["train"]["files"] = [str(secret)]
    elif name == "shard_not_described":
        entry["files"] = {}
    elif name == "sha_not_hex":
        entry["files"][shard]["sha256"] = "../../etc/passwd"
    elif name == "size_negative":
        entry["files"][shard]["size"] = -1
    elif name == "no_train_split":
        entry["splits"] = {"removed": entry["splits"]["removed"]}
    elif name == "deeply_nested":
        manifest_path.write_text("[" * 100000 + "]" * 100000)
        return
    manifest_path.write_text(json.dumps(manifest))


MANIFEST_EDITS = [
    "not_json",
    "a_list",
    "no_configs",
    "config_not_a_mapping",
    "shard_dotdot",
    "shard_absolute",
    "shard_not_described",
    "sha_not_hex",
    "size_negative",
    "no_train_split",
    "deeply_nested",
]


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("edit", MANIFEST_EDITS)
def test_a_broken_or_hostile_manifest_is_one_clear_error(
    copy: Path, secret: Path, tmp_path: Path, cli: Callable[..., Ran], edit: str
) -> None:
    _manifest_edit(edit, copy, secret)
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 2 and "Traceback" not in ran.log
    assert MANIFEST in ran.log or str(copy) in ran.log
    assert not (tmp_path / "O" / TRAIN_FILE).exists()


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("what", ["manifest", "shard"])
def test_a_manifest_or_shard_that_links_out_of_the_copy_is_refused(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], what: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    name = MANIFEST if what == "manifest" else shard_name(CONFIG)
    shutil.move(str(copy / name), outside / "moved")
    (copy / name).symlink_to(outside / "moved")
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 2 and "leads outside" in ran.log


@pytest.mark.adversarial("correct")
def test_a_card_whose_front_matter_points_outside_the_copy_is_not_read(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    """`datasets` would read any file a card's `data_files` names (absolute or `../`): export reads the manifest."""
    planted = tmp_path / "planted"
    planted.mkdir()
    rows = train_rows(copy)
    for row in rows:
        row[schema.CONVERSATIONS][-1]["value"] = "PLANTED"
    table = pq.read_table(copy / shard_name(CONFIG))
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), planted / "train.parquet")
    card = (copy / "README.md").read_text()
    card = card.replace(f"path: {CONFIG}/train-*", f"path: {planted}/train.parquet", 1)
    assert str(planted) in card
    (copy / "README.md").write_text(card)
    ran = cli(*export_argv(copy, tmp_path / "O"))
    assert ran.code == 0, ran.log
    assert "PLANTED" not in (tmp_path / "O" / TRAIN_FILE).read_text()


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("column", [schema.CONVERSATIONS, schema.IMAGE, schema.ID])
def test_a_column_of_another_type_is_one_clear_error(tmp_path: Path, cli: Callable[..., Ran], column: str) -> None:
    from published_copy import image_row, tiny_copy

    rows = [image_row(0, picture())]
    copy = tiny_copy(tmp_path / "pub", rows)
    shard = copy / shard_name("tiny")
    table = pq.read_table(shard)
    index = table.schema.get_field_index(column)
    replaced = pa.array([json.dumps(value, default=str) for value in table.column(column).to_pylist()])
    table = table.set_column(index, pa.field(column, pa.string()), replaced)
    metadata = json.loads(table.schema.metadata[b"huggingface"])
    metadata["info"]["features"][column] = {"dtype": "string", "_type": "Value"}
    table = table.replace_schema_metadata({b"huggingface": json.dumps(metadata).encode()})
    if column == schema.ID:
        table = table.set_column(index, pa.field(column, pa.int64()), pa.array([7]))
        metadata["info"]["features"][column] = {"dtype": "int64", "_type": "Value"}
        table = table.replace_schema_metadata({b"huggingface": json.dumps(metadata).encode()})
    pq.write_table(table, shard)
    reseal(copy, "tiny")
    ran = cli("export", "tiny", "--from", copy, "--format", "jsonl", "--out", tmp_path / "O")
    assert ran.code == 2 and f"column '{column}' has type" in ran.log


@pytest.mark.adversarial("rejected")
def test_rows_with_broken_turns_are_skipped_with_their_reason(tmp_path: Path, cli: Callable[..., Ran]) -> None:
    from published_copy import image_row, tiny_copy

    good = image_row(0, picture())
    rows = [good]
    rows.append(image_row(1, picture("blue"), conversations=[]))
    rows.append(
        image_row(
            2,
            picture("green"),
            conversations=[{"from": "system", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}],
        )
    )
    rows.append(
        image_row(
            3,
            picture("gray"),
            conversations=[{"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": None}],
        )
    )
    rows.append(image_row(4, picture("pink"), conversations=[{"from": None, "value": "<image>\nx"}]))
    rows.append(image_row(5, picture("navy"), duplicate_of="x-0", similarity=0.9))
    rows.append(image_row(6, picture("lime"), similarity=float("nan")))
    copy = tiny_copy(
        tmp_path / "pub",
        [{**row, "duplicate_of": row.get("duplicate_of"), "similarity": row.get("similarity")} for row in rows],
    )
    for fmt in ("llava", "jsonl"):
        ran = cli("export", "tiny", "--from", copy, "--format", fmt, "--out", tmp_path / "O")
        assert ran.code == 0, ran.log
        expected = "empty_conversation: 1, bad_role: 2, empty_turn: 1, removed_by_dedup: 1"
        assert all(part in ran.out for part in expected.split(", "))
        assert ("unwritable_value: 1" in ran.out) == (fmt == "jsonl")


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("revision", ["v2.0.0", "", "1.0.0\0"])
def test_a_revision_a_folder_does_not_hold_is_one_clear_error(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran], revision: str
) -> None:
    ran = cli(*export_argv(copy, tmp_path / "O", "--revision", revision))
    assert ran.code == 2 and "revision" in ran.log


# --- Running, killed, at once, on a full disk ---------------------------------------------------------------------

KILLED_EXPORT = """
import os, sys, time
from llava_mixes.exporters import pictures
put, count = pictures.Pictures._put, [0]
def slow_put(self, *args):
    count[0] += 1
    if count[0] == 4:
        open(sys.argv[1], "w").close()
        time.sleep(120)
    return put(self, *args)
pictures.Pictures._put = slow_put
from llava_mixes.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.adversarial("repaired")
def test_an_export_killed_midway_leaves_the_last_whole_export_and_the_next_one_completes(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    out = tmp_path / "O"
    assert cli(*export_argv(copy, out)).code == 0
    before = (out / TRAIN_FILE).read_bytes()
    shutil.rmtree(out / "images")
    edit_rows(copy, lambda rows: rows[:-1])
    flag = tmp_path / "flag"
    argv = [str(arg) for arg in export_argv(copy, out)]
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    process = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(flag), *argv], env=env)
    deadline = time.monotonic() + 120
    while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "the export did not reach its fourth picture"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (out / TRAIN_FILE).read_bytes() == before  # the last whole export, never a half one
    ran = cli(*export_argv(copy, out))
    assert ran.code == 0, ran.log
    assert cli(*export_argv(copy, tmp_path / "clean")).code == 0
    assert records(out) == records(tmp_path / "clean")
    assert every_file(out / "images").keys() == {
        path.replace(str(tmp_path / "clean"), str(out)) for path in every_file(tmp_path / "clean" / "images")
    }
    assert not [path for path in out.iterdir() if path.name.startswith(".llava_mixes-tmp-")]


@pytest.mark.adversarial("correct")
def test_two_exports_into_one_out_at_once_both_land(copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "O"
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    command = [str(Path(sys.executable).parent / "llava-mixes")]
    runs = [
        subprocess.Popen(
            [*command, *map(str, export_argv(copy, out, "--name", name, fmt="llamafactory"))],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("first", "second")
    ]
    for run in runs:
        assert run.wait(timeout=180) == 0, run.stderr.read() if run.stderr else ""
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"first", "second"}
    assert records(out, "first.llamafactory.json") == records(out, "second.llamafactory.json")
    assert all(
        (out / path).is_file() for record in records(out, "first.llamafactory.json") for path in record["images"]
    )


@pytest.mark.adversarial("error")
def test_a_full_disk_while_writing_pictures_is_one_clear_error(
    copy: Path, tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    """The file size limit (`ulimit -f`) stands in for a full disk: every write past it fails with EFBIG."""
    assert cli(*export_argv(copy, tmp_path / "warm")).code == 0  # the copy's Arrow cache is written first
    out = tmp_path / "O"
    out.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, hard))
    try:
        ran = cli(*export_argv(copy, out))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert ran.code == 2 and "images_dir" in ran.log and os.strerror(errno.EFBIG) in ran.log
    assert not (out / TRAIN_FILE).exists()
    assert not [path for path in out.rglob("*") if path.name.startswith(".llava_mixes-tmp-")]


# --- report --out ---------------------------------------------------------------------------------------------------


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("name", ["index.html", "sweep.json"])
def test_report_never_overwrites_a_file_it_did_not_write(
    demo: tuple[Path, Path], tmp_path: Path, cli: Callable[..., Ran], name: str
) -> None:
    out = tmp_path / "R"
    out.mkdir()
    (out / name).write_text("the user's own")
    ran = cli("report", "mix665k", "--data-dir", demo[0], "--out", out, "--embedder", "thumbnail")
    assert ran.code == 2 and f"{out / name} exists and llava-mixes did not write it" in ran.log
    assert (out / name).read_text() == "the user's own"


@pytest.mark.adversarial("correct")
def test_a_report_into_an_earlier_reports_folder_rewrites_only_its_own_files(
    demo: tuple[Path, Path], tmp_path: Path, cli: Callable[..., Ran]
) -> None:
    out = tmp_path / "R"
    argv = ["--data-dir", demo[0], "--out", out, "--embedder", "thumbnail", "--every", "7"]
    assert cli("report", "mix665k-dedup-0.8", *argv).code == 0
    assert (out / "sample-removed.csv").is_file()
    (out / "notes.txt").write_text("mine")
    ran = cli("report", "mix665k", *argv)
    assert ran.code == 0, ran.log
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "sample-removed.csv").exists()  # the earlier report's, which this one does not write
    assert json.loads((out / "sweep.json").read_text())["config"] == "mix665k"
