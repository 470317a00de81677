"""The output folders of export and report (`--out`, `--images-dir`), and export killed, run twice at once and on a
full disk: the project writes only inside the folders named, and overwrites only what it wrote."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import export_copies
import pytest
from export_copies import (
    TRAIN_FILE,
    Ran,
    every_file,
    export_argv,
    image_indices,
    records,
    train_rows,
)
from published_copy import CONFIG, edit_rows

from llava_mixes import schema

FEATURE = "export"

# The shared fixtures (a module-level name is what pytest looks them up by).
demo, copy, secret, cli = export_copies.demo, export_copies.copy, export_copies.secret, export_copies.cli

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
