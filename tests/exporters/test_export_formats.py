"""Each format of the demo's `mix665k-dedup-0.8`: the tag counts, the pictures, the round trip through the 665K
builder, and the file read by the consuming tool's own loader where it is installed."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import datasets
import pytest

import llava_mixes  # noqa: F401 - registers the builder
from llava_mixes import schema
from llava_mixes.exporters import FORMATS, export
from llava_mixes.outputs import TEMP_PREFIX
from llava_mixes.playground import Playground

CONFIG = "mix665k-dedup-0.8"
MESSAGE_FORMATS = ("llamafactory", "swift")


def build(playground: Playground) -> datasets.DatasetDict:
    return datasets.load_dataset("llava_mixes", CONFIG, data_dir=str(playground.root), embedder="thumbnail")


def read_records(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return json.loads(path.read_text(encoding="utf-8"))


def texts_and_images(fmt: str, record: dict[str, Any]) -> tuple[list[str], list[str]]:
    if fmt in MESSAGE_FORMATS:
        return [message["content"] for message in record["messages"]], record["images"]
    return [turn["value"] for turn in record["conversations"]], [record["image"]] if record.get("image") else []


def picture_file(fmt: str, path: str, image_root: Path | None, out: Path) -> Path:
    if fmt == "swift":
        assert os.path.isabs(path)
        return Path(path)
    assert not os.path.isabs(path)
    assert image_root is not None
    return image_root / path


def resolved(row: dict[str, Any]) -> str:
    return os.path.realpath(row[schema.IMAGE]["path"])


@pytest.fixture
def built(playground: Playground) -> datasets.DatasetDict:
    return build(playground).cast_column(schema.IMAGE, datasets.Image(decode=False))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_kept_row_is_written_with_as_many_image_tags_as_pictures(
    fmt: str, built: datasets.DatasetDict, playground: Playground, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = export(built, fmt, out, image_folder=playground.root, progress=False)
    records = read_records(result.data_file)
    train, removed = list(built["train"]), list(built["removed"])
    assert len(removed) > 0 and any(row[schema.IMAGE] is None for row in train)  # the demo has both kinds
    assert result.rows == len(records) == len(train) and not result.skipped
    assert result.image_rows == sum(row[schema.IMAGE] is not None for row in train)
    removed_files = {resolved(row) for row in removed} - {resolved(row) for row in train if row[schema.IMAGE]}
    assert removed_files  # the removed rows' pictures are files no kept row uses
    for row, record in zip(train, records, strict=True):
        texts, images = texts_and_images(fmt, record)
        assert sum(text.count("<image>") for text in texts) == len(images)
        assert texts == [turn["value"] for turn in row[schema.CONVERSATIONS]]
        if row[schema.IMAGE] is None:
            assert images == [] and (fmt in MESSAGE_FORMATS or "image" not in record or fmt == "jsonl")
            continue
        file = picture_file(fmt, images[0], result.image_root, out)
        assert file.is_file() and os.path.realpath(file) == resolved(row)
        assert os.path.realpath(file) not in removed_files
    assert not [name for name in os.listdir(out) if name.startswith(TEMP_PREFIX)]  # no temporary file left


def test_llava_file_is_the_665k_shape(built: datasets.DatasetDict, playground: Playground, tmp_path: Path) -> None:
    result = export(built, "llava", tmp_path / "out", image_folder=playground.root, progress=False)
    assert result.image_root == playground.root.resolve()
    records = json.loads(result.data_file.read_text())
    assert isinstance(records, list)
    for row, record in zip(built["train"], records, strict=True):
        assert list(record) == (["id", "image", "conversations"] if row[schema.IMAGE] else ["id", "conversations"])
        assert record["id"] == row[schema.SOURCE_ID]
        assert [turn["from"] for turn in record["conversations"]][:2] == ["human", "gpt"]
        if row[schema.IMAGE]:
            assert record["conversations"][0]["value"].startswith("<image>\n")
            assert record["image"] == os.path.relpath(row[schema.IMAGE]["path"], playground.root)


def test_llava_export_reads_back_through_the_665k_builder(
    built: datasets.DatasetDict, playground: Playground, tmp_path: Path
) -> None:
    """A data_dir holding the export as `llava_v1_5_mix665k.json` and links to the image folders builds the same
    rows: same order, ids, text, pictures (by SHA-256) and tasks."""
    result = export(built, "llava", tmp_path / "out", image_folder=playground.root, progress=False)
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    for entry in playground.root.iterdir():
        if entry.is_dir():
            (again_dir / entry.name).symlink_to(entry, target_is_directory=True)
    (again_dir / "llava_v1_5_mix665k.json").write_bytes(result.data_file.read_bytes())
    again = datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(again_dir))["train"]
    again = again.cast_column(schema.IMAGE, datasets.Image(decode=False))
    columns = (schema.SOURCE_ID, schema.IMAGE_GROUP, schema.IMAGE_SHA256, schema.CONVERSATIONS, schema.TASK)
    assert len(again) == len(built["train"])
    renamed = 0
    for before, after in zip(built["train"], again, strict=True):
        assert {c: before[c] for c in columns} == {c: after[c] for c in columns}
        if before[schema.IMAGE] is not None:
            # The export names the file the build found, which is `image_path` unless it had another extension.
            assert after[schema.IMAGE_PATH] == os.path.relpath(before[schema.IMAGE]["path"], playground.root)
            renamed += after[schema.IMAGE_PATH] != before[schema.IMAGE_PATH]
        else:
            assert after[schema.IMAGE_PATH] is None
    assert renamed == 1  # the demo's OCR-VQA picture written as .jpg and saved as .gif


def test_llava_loader_logic_reads_every_row(
    built: datasets.DatasetDict, playground: Playground, tmp_path: Path
) -> None:
    """LLaVA is not installable here (it pins an old torch): this repeats what its `LazySupervisedDataset` and
    `preprocess_multimodal` (haotian-liu/LLaVA llava/train/train.py, c121f04) do with each record."""
    from PIL import Image

    result = export(built, "llava", tmp_path / "out", image_folder=playground.root, progress=False)
    with open(result.data_file) as handle:  # as train.py opens it: default encoding
        list_data_dict = json.load(handle)
    # Every kept row, and the pictures among them: the checks below run on each record.
    assert len(list_data_dict) == result.rows == len(built["train"]) > 0
    image_rows = sum(1 for row in built["train"] if row[schema.IMAGE])
    assert sum("image" in sample for sample in list_data_dict) == result.image_rows == image_rows > 0
    for sample in list_data_dict:
        source = sample["conversations"]
        if "image" in sample:
            Image.open(os.path.join(str(result.image_root), sample["image"])).convert("RGB")
            for sentence in source:
                if "<image>" in sentence["value"]:
                    moved = ("<image>" + "\n" + sentence["value"].replace("<image>", "").strip()).strip()
                    assert moved == sentence["value"]  # already where LLaVA puts it: nothing changes
            assert "<image>" in source[0]["value"]
        assert all(turn["from"] in ("human", "gpt") for turn in source)
        assert sum(len(turn["value"].split()) for turn in source) > 0  # modality_lengths


def _installed_or_skip(distribution: str) -> None:
    """Skip where `distribution` is not installed (`make install` installs it); where it is, its loader must
    import, so that a broken install fails instead of skipping."""
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{distribution} is not installed (`make install` installs it: see CONSUMER_LOADERS in Makefile)")


def _llamafactory() -> Any:
    """LLaMA-Factory's data package; its audio import is stubbed (torchaudio wheels lag torch here)."""
    _installed_or_skip("llamafactory")
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub
    from llamafactory.data import loader, parser
    from llamafactory.hparams import DataArguments

    return loader, parser, DataArguments


def test_llamafactory_loads_the_export_with_its_own_loader(
    built: datasets.DatasetDict, playground: Playground, tmp_path: Path
) -> None:
    loader, parser, DataArguments = _llamafactory()
    out = tmp_path / "lf"
    (out).mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "other.json"}}))
    result = export(built, "llamafactory", out, image_folder=playground.root, progress=False)
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"other", CONFIG}  # the user's entries are kept
    [attr] = parser.get_dataset_list([CONFIG], str(out))
    assert (attr.load_from, attr.formatting, attr.images) == ("file", "sharegpt", "images")
    data_args = DataArguments(dataset_dir=str(out), dataset=CONFIG, media_dir=str(result.image_root))
    training_args = types.SimpleNamespace(local_process_index=0, main_process_first=None, dataloader_num_workers=0)
    model_args = types.SimpleNamespace(cache_dir=None, hf_hub_token=None)  # the two fields the loader reads
    aligned = loader._load_single_dataset(attr, model_args, data_args, training_args)
    assert len(aligned) == result.rows == len(built["train"])
    for row, example in zip(built["train"], aligned, strict=True):
        turns = example["_prompt"] + example["_response"]
        assert [turn["content"] for turn in turns] == [turn["value"] for turn in row[schema.CONVERSATIONS]]
        assert [turn["role"] for turn in turns][:2] == ["user", "assistant"]
        images = example["_images"] or []
        assert sum(turn["content"].count("<image>") for turn in turns) == len(images)
        if row[schema.IMAGE]:
            path = images[0]["path"] if isinstance(images[0], dict) else images[0]
            assert os.path.realpath(path) == resolved(row)


def test_swift_loads_the_export_with_its_own_loader(
    built: datasets.DatasetDict, playground: Playground, tmp_path: Path
) -> None:
    _installed_or_skip("ms-swift")
    swift_dataset = importlib.import_module("swift.dataset")
    result = export(built, "swift", tmp_path / "swift", image_folder=playground.root, progress=False)
    train, _ = swift_dataset.load_dataset([str(result.data_file)], split_dataset_ratio=0.0, num_proc=1)
    assert len(train) == result.rows == len(built["train"])
    for row, example in zip(built["train"], train, strict=True):
        texts = [message["content"] for message in example["messages"]]
        assert texts == [turn["value"] for turn in row[schema.CONVERSATIONS]]
        images = example["images"] or []
        assert sum(text.count("<image>") for text in texts) == len(images)
        if row[schema.IMAGE]:
            assert os.path.realpath(images[0]["path"]) == resolved(row)


def test_llamafactory_paths_survive_moving_the_export(
    built: datasets.DatasetDict, playground: Playground, tmp_path: Path
) -> None:
    """LLaMA-Factory joins a relative path to `media_dir` (default: `dataset_dir`): pictures referenced in the data
    folder are written relative to it (its `media_dir`), pictures under the export relative to the export."""
    referenced = export(built, "llamafactory", tmp_path / "a", image_folder=playground.root, progress=False)
    assert referenced.image_root == playground.root and f"media_dir: {playground.root}" in referenced.usage()
    copied = export(
        built,
        "llamafactory",
        tmp_path / "b",
        images_dir=tmp_path / "b" / "pics",
        progress=False,
        files_from=playground.root,
    )
    assert copied.image_root == (tmp_path / "b").resolve() and "media_dir" not in copied.usage()
    for result, media_dir in ((referenced, playground.root), (copied, tmp_path / "moved_b")):
        moved = tmp_path / f"moved_{result.data_file.parent.name}"
        shutil.move(str(result.data_file.parent), moved)
        paths = [path for record in read_records(moved / result.data_file.name) for path in record["images"]]
        assert paths and not [path for path in paths if path.startswith("../") or os.path.isabs(path)]
        assert all((Path(media_dir) / path).is_file() for path in paths)


def test_export_always_prints_what_it_wrote_and_skipped(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llava_mixes.cli.main import main

    argv = ["export", CONFIG, "--data-dir", str(playground.root), "--format", "jsonl", "--embedder", "thumbnail"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    train = build(playground)["train"]
    assert f"{CONFIG}: wrote {len(train)} of {len(train)} rows" in printed and "skipped 0 rows\n" in printed
