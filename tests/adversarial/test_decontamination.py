"""Hostile and careless benchmark references: links that dangle, loop or lead out, question files that name
pictures outside their folder or hold huge, broken or non-UTF-8 lines, TSVs with huge cells, bad base64 and
index cycles, saved datasets whose records point outside, and pictures replaced behind the cache's back.
Nothing outside a benchmark's folder is read; what is left out is named and counted; an edit is reflected."""

from __future__ import annotations

import base64
import json
import os
import tracemalloc
from pathlib import Path

import datasets
import numpy as np
import pytest

from llava_mixes.builder import Built, build
from llava_mixes.decontam import (
    CONTAMINATED_SPLIT,
    find_contamination,
    load_references,
    reference_files,
    references_fingerprint,
)
from llava_mixes.decontam.reference_files import question_names, tsv_pictures
from llava_mixes.errors import ConfigError, LlavaMixesError, PathEscapeError
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground
from llava_mixes.playground.pictures import encode, synthetic_photo

FEATURE = "decontamination"


def picture(seed: int) -> bytes:
    return encode(synthetic_photo(np.random.default_rng(seed)))


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def questions(*names: object) -> str:
    return "".join(json.dumps({"question_id": number, "image": name}) + "\n" for number, name in enumerate(names))


def ids(found) -> list[str]:
    return sorted(image.ref_id for image in found.images)


def missing(found, benchmark: str) -> str:
    return " | ".join(found.missing.get(benchmark, []))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A secret picture outside every reference folder."""
    return write(tmp_path / "outside" / "secret.jpg", picture(7))


def secret_read(found, outside: Path) -> bool:
    data = outside.read_bytes()
    return any(image.path == str(outside.resolve()) or image.data == data for image in found.images)


# The issue's cases: links in reference folders.


@pytest.mark.adversarial("rejected")
def test_dangling_links_and_link_loops_are_named_and_counted(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    write(folder / "a.jpg", picture(1))
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    os.symlink(folder / "loop2.jpg", folder / "loop1.jpg")
    os.symlink(folder / "loop1.jpg", folder / "loop2.jpg")
    found = load_references([folder])
    assert ids(found) == ["a.jpg"]
    notes = missing(found, "bench")
    assert "dangling.jpg (dangling symbolic link)" in notes
    assert "loop1.jpg (" in notes and "loop2.jpg (" in notes and len(found.missing["bench"]) == 3


@pytest.mark.adversarial("rejected")
def test_a_folder_link_that_leads_outside_is_not_followed(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "bench"
    write(folder / "a.jpg", picture(1))
    os.symlink(outside.parent, folder / "more")
    os.symlink(outside, folder / "b.jpg")
    found = load_references([folder])
    assert ids(found) == ["a.jpg"] and not secret_read(found, outside)
    assert "more (leads outside" in missing(found, "bench") and "b.jpg (leads outside" in missing(found, "bench")


@pytest.mark.adversarial("rejected")
def test_skipped_links_count_as_not_found_in_the_benchmark_table(playground: Playground, tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    write(folder / "a.jpg", picture(1))
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    rows = build("mix665k", str(playground.root), str(tmp_path / "hf"), content_cache_dir=str(tmp_path / "cc"))
    found = find_contamination(rows.dataset["train"], [folder], embedder="thumbnail", cache_dir=tmp_path / "cc")
    assert [(line.benchmark, line.reference_images, line.not_found) for line in found.benchmarks] == [("bench", 1, 1)]


# The issue's cases: question files naming pictures outside their folder.


@pytest.mark.adversarial("rejected")
def test_pictures_named_outside_the_question_folder_are_refused_and_reported(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "pope"
    write(folder / "val2014" / "a.jpg", picture(1))
    write(folder / "q.jsonl", questions("val2014/a.jpg", str(outside), "../outside/secret.jpg"))
    found = load_references([folder / "q.jsonl"])
    assert ids(found) == ["val2014/a.jpg"] and not secret_read(found, outside)
    notes = found.missing["pope"]
    assert len(notes) == 2 and all("leads outside" in note for note in notes)


@pytest.mark.adversarial("rejected")
def test_a_picture_reached_through_a_link_that_leads_out_is_refused(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "pope"
    folder.mkdir()
    os.symlink(outside.parent, folder / "val2014", target_is_directory=True)
    write(folder / "q.jsonl", questions("val2014/secret.jpg"))
    found = load_references([folder])
    assert found.images == [] and not secret_read(found, outside)
    assert "leads outside" in missing(found, "pope")


# The issue's cases: benchmark pictures replaced behind the build's back (through the public build).


def decontaminated(playground: Playground, tmp_path: Path, reference: Path) -> Built:
    kwargs = {"content_cache_dir": str(tmp_path / "cc"), "decontaminate_embedder": "thumbnail"}
    return build("mix665k", str(playground.root), str(tmp_path / "hf"), decontaminate=[str(reference)], **kwargs)


def training_picture(playground: Playground) -> bytes:
    evals = write_eval_playground(playground.root)
    return (playground.root / evals.planted["pope"]["val2014/COCO_val2014_000000000042.jpg"]).read_bytes()


@pytest.mark.adversarial("reflected")
def test_a_replaced_picture_named_by_a_question_file_is_noticed(playground: Playground, tmp_path: Path) -> None:
    training = training_picture(playground)
    question_file = write(tmp_path / "ref" / "pope" / "q.jsonl", questions("a.jpg"))
    write(tmp_path / "ref" / "pope" / "a.jpg", picture(99))
    assert decontaminated(playground, tmp_path, question_file).report.contaminated_rows == 0
    (tmp_path / "ref" / "pope" / "a.jpg").write_bytes(training)
    again = decontaminated(playground, tmp_path, question_file)
    assert again.report.contaminated_rows >= 1 and len(again.dataset[CONTAMINATED_SPLIT]) >= 1


@pytest.mark.adversarial("reflected")
def test_a_picture_rewritten_in_place_with_its_size_and_mtime_kept_is_noticed(
    playground: Playground, tmp_path: Path
) -> None:
    training, unseen = training_picture(playground), picture(99)
    size = max(len(training), len(unseen))
    target = write(tmp_path / "ref" / "a.jpg", unseen.ljust(size, b"\0"))
    before = os.stat(target)
    assert decontaminated(playground, tmp_path, target.parent).report.contaminated_rows == 0
    with open(target, "r+b") as handle:
        handle.write(training.ljust(size, b"\0"))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(target)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert decontaminated(playground, tmp_path, target.parent).report.contaminated_rows >= 1


@pytest.mark.adversarial("reflected")
def test_a_picture_added_to_a_folder_reference_is_noticed(playground: Playground, tmp_path: Path) -> None:
    training = training_picture(playground)
    write(tmp_path / "ref" / "a.jpg", picture(99))
    assert decontaminated(playground, tmp_path, tmp_path / "ref").report.contaminated_rows == 0
    write(tmp_path / "ref" / "deeper" / "b.jpg", training)
    assert decontaminated(playground, tmp_path, tmp_path / "ref").report.contaminated_rows >= 1


@pytest.mark.adversarial("reflected")
def test_fingerprints_follow_every_file_read(tmp_path: Path) -> None:
    folder = tmp_path / "pope"
    write(folder / "a.jpg", picture(1))
    write(folder / "unnamed.jpg", picture(2))
    write(folder / "q.jsonl", questions("a.jpg", "b.jpg"))
    first = references_fingerprint([folder])
    os.utime(folder / "unnamed.jpg", ns=(1, 1))  # a picture no question names: not read, not in the digest
    assert references_fingerprint([folder]) == first
    write(folder / "b.jpg", picture(3))  # a named picture that was missing appears
    second = references_fingerprint([folder])
    assert second != first
    os.symlink(folder / "gone.jpg", folder / "link.jpg")  # a link that is skipped is named in the digest
    assert references_fingerprint([folder]) != second


# Question files: huge, broken and odd lines.


@pytest.mark.adversarial("rejected")
def test_a_100_mb_question_line_is_one_reported_line_in_bounded_memory(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    write(folder / "a.jpg", picture(1))
    huge = json.dumps({"image": "a.jpg", "text": "x" * (100 << 20)})
    write(folder / "q.jsonl", huge + "\n" + questions("a.jpg"))
    tracemalloc.start()
    try:
        names, problems = question_names(folder / "q.jsonl")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert names == ["a.jpg"] and problems == ["q.jsonl line 1: longer than 1,048,576 bytes"]
    assert peak < 16 << 20
    assert "line 1: longer than" in missing(load_references([folder]), "bench")


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'{"image": "caf\xe9.jpg"}\n', "line 1: not UTF-8 (byte 14 of the file)"),
        (b"{not json\n", "line 1: not JSON"),
        (b"[" * 200_000 + b"]" * 200_000 + b"\n", "line 1: not JSON"),
        (b'{"image": 7}\n', "line 1: 'image' is not a file name"),
        (b'{"image": {"path": "a.jpg"}}\n', "line 1: 'image' is not a file name"),
        (b'{"image": ["a.jpg", 3]}\n', "line 1: 'image' is not a file name"),
    ],
    ids=["latin1", "not-json", "deep", "number", "mapping", "list-with-number"],
)
def test_bad_question_lines_are_named_and_the_rest_read(tmp_path: Path, line: bytes, problem: str) -> None:
    folder = tmp_path / "bench"
    write(folder / "a.jpg", picture(1))
    write(folder / "q.jsonl", line + questions("a.jpg").encode())
    found = load_references([folder])
    assert ids(found) == ["a.jpg"]
    assert missing(found, "bench") == f"q.jsonl {problem}" or missing(found, "bench").startswith(f"q.jsonl {problem}")


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize(
    "name",
    ["a\x00b.jpg", "x" * 5000 + ".jpg", "val2014", "/dev/zero", "fifo.jpg"],
    ids=["nul", "long", "dir", "dev", "fifo"],
)
def test_names_that_are_no_readable_picture_are_reported(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "bench"
    write(folder / "val2014" / "a.jpg", picture(1))
    os.mkfifo(folder / "fifo.jpg")
    write(folder / "q.jsonl", questions(name, "val2014/a.jpg"))
    found = load_references([folder])
    assert ids(found) == ["val2014/a.jpg"]
    notes = found.missing["bench"]
    # The FIFO is skipped by the walk in every case, and the name is reported on its own.
    assert len(notes) == 2 and "fifo.jpg (not a regular file)" in notes and all(len(note) < 400 for note in notes)


@pytest.mark.adversarial("correct")
def test_a_question_can_name_several_pictures_and_a_bom_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    write(folder / "a.jpg", picture(1))
    write(folder / "sub" / "b.jpg", picture(2))
    write(
        folder / "q.jsonl",
        "\ufeff" + json.dumps({"image": ["a.jpg", "b.jpg"]}) + "\n\n" + json.dumps({"text": "no image"}),
    )
    found = load_references([folder])
    assert ids(found) == ["a.jpg", "sub/b.jpg"] and not found.missing


@pytest.mark.adversarial("correct")
def test_an_empty_question_file_is_a_benchmark_without_pictures(tmp_path: Path) -> None:
    write(tmp_path / "bench" / "q.jsonl", "")
    found = load_references([tmp_path / "bench"])
    assert found.benchmarks == ["bench"] and found.images == [] and not found.missing


# TSVs: huge cells, bad base64, back-references that loop.


def tsv(path: Path, rows: list[tuple[str, str]], header: str = "index\tquestion\timage") -> Path:
    return write(path, header + "\n" + "".join(f"{index}\tQ?\t{cell}\n" for index, cell in rows))


def b64(seed: int) -> str:
    return base64.b64encode(picture(seed)).decode()


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


def saved(folder: Path, rows: list[dict[str, object]]) -> Path:
    features = datasets.Features({"question_id": datasets.Value("int64"), "image": datasets.Image()})
    dataset = datasets.Dataset.from_dict({"question_id": list(range(len(rows))), "image": rows}, features=features)
    dataset.save_to_disk(str(folder))
    return folder


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


@pytest.mark.adversarial("rejected")
@pytest.mark.parametrize("layout", ["questions", "tsv"])
def test_a_link_left_out_of_a_benchmark_folder_is_counted_once(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "bench"
    if layout == "questions":
        write(folder / "q.jsonl", questions("a.jpg"))
        write(folder / "a.jpg", picture(1))
    else:
        tsv(folder / "mm.tsv", [("0", b64(1))])
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    found = load_references([folder])
    assert len(found.images) == 1 and len(found.missing["bench"]) == 1
    assert found.missing["bench"][0].startswith("dangling.jpg (")
