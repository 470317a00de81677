"""What the export attacks share (tests/adversarial/test_export*.py): the demo published once per module, a fresh
copy of it per test with edits that keep its manifest consistent, a secret beside it, and `llava-mixes` run in
this process."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from published_copy import CONFIG, publish_demo, shard_name

from llava_mixes import schema
from llava_mixes.cli.main import main
from llava_mixes.playground import write_playground

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
