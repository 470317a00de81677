"""Transient errors: an image that cannot be read (EACCES) is rejected as `unreadable_image` with its errno,
is never cached, and is looked at again by the next build, whether its mode changed or only who reads it.

The test process is root, which reads any file, so the builds that must meet EACCES run with root's
permission override dropped (see `permissions.mode_bits_bind`); the image is then `chmod 000`, unreadable
for its owner too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import datasets
import pytest
from permissions import mode_bits_bind

import llava_mixes
from llava_mixes import schema
from llava_mixes.playground.layout import ANNOTATION_FILE, Playground, write_playground
from llava_mixes.sources.images import ImageIndex

FEATURE = "annotations and images"

PLAIN = "mix665k"


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """The folder of the playground, the caches and the index (root owns it: its owner bits let root in)."""
    return tmp_path


@pytest.fixture
def world_playground(shared: Path) -> Playground:
    return write_playground(shared / "playground")


def locked_image(playground: Playground) -> tuple[str, Path]:
    """The first row's image, made unreadable (for root too, inside `mode_bits_bind`)."""
    row = json.loads((playground.root / ANNOTATION_FILE).read_text())[0]
    file = playground.root / row["image"]
    file.chmod(0o000)
    return str(row["id"]), file


def build(playground: Playground, shared: Path, **kwargs: Any) -> datasets.DatasetDict:
    return datasets.load_dataset(
        "llava_mixes",
        PLAIN,
        data_dir=str(playground.root),
        cache_dir=str(shared / "hf_datasets"),
        content_cache_dir=str(shared / "content_cache"),
        **kwargs,
    )


def rejections(dataset: datasets.DatasetDict) -> dict[str | None, Any]:
    return {rejection.source_id: rejection for rejection in llava_mixes.load_report(dataset).rejected}


@pytest.mark.adversarial("rejected")
def test_an_unreadable_image_is_rejected_with_its_errno(world_playground: Playground, shared: Path) -> None:
    row_id, file = locked_image(world_playground)
    with mode_bits_bind():
        dataset = build(world_playground, shared)
        rejected = rejections(dataset)
    assert rejected[row_id].reason == schema.UNREADABLE_IMAGE
    assert "EACCES (13)" in rejected[row_id].detail and str(file) in rejected[row_id].detail
    assert len(dataset["train"]) + len(rejected) == world_playground.rows


@pytest.mark.adversarial("reflected")
def test_an_image_made_readable_is_accepted_by_the_next_build(world_playground: Playground, shared: Path) -> None:
    row_id, file = locked_image(world_playground)
    with mode_bits_bind():
        assert rejections(build(world_playground, shared))[row_id].reason == schema.UNREADABLE_IMAGE
    file.chmod(0o644)
    with mode_bits_bind():
        dataset = build(world_playground, shared)
        assert row_id not in rejections(dataset)
    assert row_id in dataset["train"][schema.SOURCE_ID]


@pytest.mark.adversarial("reflected")
def test_an_io_error_is_never_cached_by_the_index_nor_the_build(world_playground: Playground, shared: Path) -> None:
    """Same file, same stat: only the reader's rights changed. Neither the image index nor the cached build may
    answer."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to read with and without the permission override a file whose stat does not change")
    row_id, file = locked_image(world_playground)
    with mode_bits_bind():
        first = ImageIndex(shared / "index_cache").check_many([file])[str(file)]
        assert rejections(build(world_playground, shared))[row_id].reason == schema.UNREADABLE_IMAGE
    assert first.error == schema.UNREADABLE_IMAGE and first.errno == 13
    assert ImageIndex(shared / "index_cache").check_many([file])[str(file)].ok
    assert row_id in build(world_playground, shared)["train"][schema.SOURCE_ID]
