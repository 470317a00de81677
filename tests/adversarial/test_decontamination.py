"""Hostile and careless benchmark folders and question files: links that dangle, loop or lead out, question
files that name pictures outside their folder or hold huge, broken or non-UTF-8 lines, and pictures replaced
behind the cache's back. Nothing outside a benchmark's folder is read; what is left out is named and counted;
an edit is reflected in the next build."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest
from benchmark_files import b64, ids, missing, picture, questions, secret_picture, secret_read, tsv, write

from llava_mixes.building.entry import Built, build
from llava_mixes.decontam import CONTAMINATED_SPLIT, find_contamination, load_references, references_fingerprint
from llava_mixes.decontam.reference_files import question_names
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground

FEATURE = "decontamination"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    return secret_picture(tmp_path)


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
