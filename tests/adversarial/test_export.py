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

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import export_copies
import huggingface_hub.constants
import pytest
from export_copies import (
    SECRET,
    Ran,
    assert_nothing_leaked,
    every_file,
    export_argv,
    image_indices,
    records,
    set_image,
    train_rows,
)
from published_copy import CONFIG, MANIFEST, edit_rows, picture, sha256, shard_name

from llava_mixes import schema
from llava_mixes.exporters import published as published_module

FEATURE = "export"

# The shared fixtures (a module-level name is what pytest looks them up by).
demo, copy, secret, cli = export_copies.demo, export_copies.copy, export_copies.secret, export_copies.cli

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
