"""Hostile and careless benchmark files of the other kinds: TSVs with huge cells, bad base64 and index cycles,
saved datasets whose records point outside, Hub datasets offline or naming local files, reference paths that
are no reference, and pictures that do not decode. Each gives one error naming the file, or the rows without a
picture named and counted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pytest
from benchmark_files import (
    b64,
    ids,
    missing,
    picture,
    questions,
    saved,
    secret_picture,
    secret_read,
    tsv,
    write,
)

from llava_mixes.building.entry import build
from llava_mixes.decontam import find_contamination, load_references, reference_files
from llava_mixes.decontam.reference_files import tsv_pictures
from llava_mixes.errors import ConfigError, LlavaMixesError, PathEscapeError
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground

FEATURE = "decontamination"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    return secret_picture(tmp_path)


# TSVs: huge cells, bad base64, back-references that loop.


@pytest.mark.adversarial("error")
def test_a_tsv_cell_over_the_cap_stops_with_the_line_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference_files, "MAX_TSV_LINE_BYTES", 1 << 20)
    limit = reference_files.csv.field_size_limit()
    path = tsv(tmp_path / "mm" / "mm.tsv", [("0", b64(1)), ("1", "A" * (3 << 20))])
    with pytest.raises(ConfigError, match=r"mm.tsv: line 3 is longer than 1,048,576 bytes"):
        load_references([path])
    assert reference_files.csv.field_size_limit() == limit


@pytest.mark.adversarial("rejected")
def test_bad_base64_and_looping_indices_are_named(tmp_path: Path) -> None:
    rows = [("0", b64(1)), ("1", "not*base64!"), ("2", "2"), ("3", "4"), ("4", "3"), ("5", ""), ("6", "0"), ("7", "8")]
    rows += [("8", "0"), ("0", b64(2)), ("9", "QUJD REVG"), ("10", "11"), ("11", "7"), ("12", "1")]
    pictures, problems = tsv_pictures(tsv(tmp_path / "mm.tsv", rows))
    assert sorted(index for index, _ in pictures) == ["0", "10", "11", "6", "7", "8"]
    assert len({data for _, data in pictures}) == 1
    assert problems == [
        "mm.tsv:1 (not base64)",
        "mm.tsv:5 (empty)",
        "mm.tsv:9 (not base64)",
        "mm.tsv:2 (refers to itself)",
        "mm.tsv:3 (refers in a cycle)",
        "mm.tsv:4 (refers in a cycle)",
        "mm.tsv:12 (refers to a row with no picture)",
    ]


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"index\tquestion\n0\tQ?\n", r"has no 'image' column"),
        (b"", r"has no 'image' column"),
        (b"index\timage\n0\tcaf\xe9\n", r"is not UTF-8 text: byte 17 \(line 2\)"),
    ],
    ids=["no-image-column", "empty", "latin1"],
)
def test_tsvs_that_cannot_be_read_stop_with_the_file_named(tmp_path: Path, data: bytes, match: str) -> None:
    path = write(tmp_path / "mm" / "mm.tsv", data)
    limit = reference_files.csv.field_size_limit()
    with pytest.raises(ConfigError, match=match):
        load_references([path])
    assert reference_files.csv.field_size_limit() == limit


@pytest.mark.adversarial("rejected")
def test_an_unclosed_quote_swallows_the_rest_of_the_file_as_one_bad_cell(tmp_path: Path) -> None:
    path = write(tmp_path / "mm.tsv", f'index\timage\n0\t{b64(1)}\n1\t"unclosed\n2\t{b64(2)}\n')
    pictures, problems = tsv_pictures(path)
    assert [index for index, _ in pictures] == ["0"] and problems == ["mm.tsv:1 (not base64)"]


@pytest.mark.adversarial("correct")
def test_quoted_cells_ragged_rows_and_a_missing_index_column(tmp_path: Path) -> None:
    text = f'index\tquestion\timage\n0\t"a\tquoted\nquestion"\t{b64(1)}\n1\tshort row\n'
    pictures, problems = tsv_pictures(write(tmp_path / "a.tsv", text))
    assert [index for index, _ in pictures] == ["0"] and problems == ["a.tsv:1 (empty)"]
    pictures, problems = tsv_pictures(write(tmp_path / "b.tsv", f"image\n{b64(1)}\n0\n"))
    assert [index for index, _ in pictures] == ["0", "1"] and not problems


# Saved datasets and Hub ids.


@pytest.mark.adversarial("error")
def test_a_saved_dataset_whose_state_names_a_file_outside_is_refused(tmp_path: Path, outside: Path) -> None:
    folder = saved(tmp_path / "saved", [{"bytes": picture(1), "path": None}])
    state = json.loads((folder / "state.json").read_text())
    for name in ("../outside/secret.jpg", str(outside)):
        state["_data_files"] = [{"filename": name}]
        (folder / "state.json").write_text(json.dumps(state))
        with pytest.raises(PathEscapeError, match=r"saved data file .* leads outside"):
            load_references([folder])


@pytest.mark.adversarial("error")
def test_a_saved_dataset_dict_whose_split_leads_outside_is_refused(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "saved"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"a": [1]})}).save_to_disk(str(folder))
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["../outside"]}))
    with pytest.raises(PathEscapeError, match=r"saved split '\.\./outside' leads outside"):
        load_references([folder])


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("damage", ["state-not-json", "state-a-list", "arrow-truncated", "arrow-missing"])
def test_a_damaged_saved_dataset_is_one_error(tmp_path: Path, damage: str) -> None:
    folder = saved(tmp_path / "saved", [{"bytes": picture(1), "path": None}])
    arrow = next(folder.glob("*.arrow"))
    if damage == "state-not-json":
        (folder / "state.json").write_text("{")
    elif damage == "state-a-list":
        (folder / "state.json").write_text("[]")
    elif damage == "arrow-truncated":
        arrow.write_bytes(arrow.read_bytes()[:100])
    else:
        arrow.unlink()
    with pytest.raises(LlavaMixesError, match=r"saved|state.json"):
        load_references([folder])


@pytest.mark.adversarial("rejected")
def test_a_stored_picture_path_outside_a_saved_dataset_is_not_read(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "saved"
    stored = datasets.Features({"image": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}})
    rows = [{"bytes": None, "path": str(outside)}, {"bytes": None, "path": "../outside/secret.jpg"}]
    rows.append({"bytes": picture(1), "path": None})
    datasets.Dataset.from_dict({"image": rows}, features=stored).save_to_disk(str(folder))
    info = json.loads((folder / "dataset_info.json").read_text())
    info["features"]["image"] = {"_type": "Image"}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    found = load_references([folder])
    assert len(found.images) == 1 and not secret_read(found, outside)
    assert all("leads outside" in note for note in found.missing["saved"]) and len(found.missing["saved"]) == 2


@pytest.mark.adversarial("error")
def test_a_hub_id_offline_says_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"reference 'nobody/nothing' not found: no such file or folder"):
        load_references(["nobody/nothing"])
    with pytest.raises(ConfigError, match=r"reference 'nobody/nothing' not found"):
        load_references(["hf://datasets/nobody/nothing"])


@pytest.mark.adversarial("rejected")
def test_a_hub_dataset_whose_rows_name_local_files_is_not_read_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outside: Path
) -> None:
    features = datasets.Features({"image": datasets.Image(decode=False)})
    hub = datasets.Dataset.from_dict({"image": [{"bytes": None, "path": str(outside)}]}, features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda repo: datasets.DatasetDict({"test": hub}))
    Path(datasets.config.HF_DATASETS_CACHE).mkdir(parents=True, exist_ok=True)
    found = load_references(["owner/bench"])
    assert found.images == [] and "leads outside" in missing(found, "owner/bench")


# Reference paths themselves.


@pytest.mark.adversarial("error")
def test_a_named_file_that_is_neither_questions_nor_a_tsv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is neither a folder, a .jsonl question file nor a .tsv"):
        load_references([write(tmp_path / "notes.txt", "hello")])
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(ConfigError, match=r"is neither a folder"):
        load_references([tmp_path / "pipe.jsonl"])


@pytest.mark.adversarial("rejected")
def test_an_eval_folder_whose_benchmark_links_outside_names_that_benchmark(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "eval"
    write(root / "pope" / "q.jsonl", questions("a.jpg"))
    write(root / "pope" / "a.jpg", picture(1))
    os.symlink(outside.parent, root / "mmvet")
    found = load_references([root])
    assert found.benchmarks == ["mmvet", "pope"] and ids(found) == ["a.jpg"]
    assert "leads outside" in missing(found, "mmvet") and not secret_read(found, outside)


@pytest.mark.adversarial("rejected")
def test_pictures_that_do_not_decode_count_as_not_embedded(playground: Playground, tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    write(folder / "a.jpg", picture(1))
    write(folder / "broken.jpg", b"\xff\xd8\xff" + os.urandom(200))
    write(folder / "empty.png", b"")
    rows = build("mix665k", str(playground.root), str(tmp_path / "hf"), content_cache_dir=str(tmp_path / "cc"))
    found = find_contamination(rows.dataset["train"], [folder], embedder="thumbnail", cache_dir=tmp_path / "cc")
    line = found.benchmarks[0]
    assert (line.reference_images, line.not_embedded, line.not_found) == (3, 2, 0)
    assert len(found.rows) == 0


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("reference", [("only-a-name",), ("a", "b", "c"), (3, "folder")], ids=["one", "three", "int"])
def test_a_malformed_name_pair_is_refused(reference: tuple) -> None:
    with pytest.raises(ConfigError, match=r"a pair must be \(name, reference\)"):
        load_references([reference])


@pytest.mark.adversarial("correct")
def test_the_same_reference_twice_counts_its_pictures_per_benchmark(playground: Playground, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    found = load_references([("one", evals.root / "pope"), ("two", evals.root / "pope")])
    assert found.benchmarks == ["one", "two"] and len(found.images) == 10
    assert {image.sha256 for image in found.images if image.benchmark == "one"} == {
        image.sha256 for image in found.images if image.benchmark == "two"
    }
