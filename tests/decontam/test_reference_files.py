"""Property tests of the benchmark file readers: question files and MMBench-style TSVs, generated and mutated,
give the right pictures and problems, or the project's own error, in bounded time."""

from __future__ import annotations

import base64
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from llava_mixes.decontam.reference_files import question_names, tsv_pictures
from llava_mixes.errors import LlavaMixesError

SECONDS = 5.0
"""What one example may take."""

picture_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
question_lines = st.one_of(
    st.builds(
        lambda name, ascii_only: ("name", name, json.dumps({"image": name}, ensure_ascii=ascii_only)),
        picture_names,
        st.booleans(),
    ),
    st.builds(lambda text: ("none", None, json.dumps({"text": text})), st.text(max_size=30)),
    st.builds(lambda junk: ("bad", None, "\x01" + junk), st.text(max_size=30).filter(lambda t: "\n" not in t)),
    st.builds(lambda value: ("bad", None, json.dumps({"image": value})), st.one_of(st.integers(), st.booleans())),
    st.just(("none", None, "")),
)


@contextmanager
def in_file(data: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"file{suffix}"
        path.write_bytes(data)
        yield path


@given(st.lists(question_lines, max_size=30), st.booleans())
def test_question_files_give_every_named_picture_and_one_problem_per_bad_line(lines: list, bom: bool) -> None:
    text = "\n".join(line for _, _, line in lines) + "\n"
    path = in_file(("\ufeff" if bom else "").encode() + text.encode("utf-8", "surrogatepass"), ".jsonl")
    started = time.monotonic()
    with path as file:
        names, problems = question_names(file)
    assert time.monotonic() - started < SECONDS
    assert names == [name for kind, name, _ in lines if kind == "name"]
    bad = [number for number, (kind, _, _) in enumerate(lines, start=1) if kind == "bad"]
    assert [problem.split(":")[0] for problem in problems] == [f"file.jsonl line {number}" for number in bad]


@given(st.binary(max_size=3000))
def test_any_bytes_as_a_question_file_give_names_or_problems(data: bytes) -> None:
    started = time.monotonic()
    with in_file(data, ".jsonl") as file:
        names, problems = question_names(file)
    assert time.monotonic() - started < SECONDS
    assert all(isinstance(name, str) and name for name in names)
    assert all(problem.startswith("file.jsonl line ") for problem in problems)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[tuple[str, str]], dict[str, bytes], set[str]]:
    """Rows `(index, image cell)` with unique indices `r<n>` (never a base64 text: 2-4 characters, not all of
    the alphabet), and what reading them must give: each index's picture, and the indices without one."""
    count = draw(st.integers(0, 12))
    indices = [f"r{number}" for number in range(count)]
    kinds = {
        index: draw(st.sampled_from(["picture", "link", "link", "link", "garbage", "empty"])) for index in indices
    }
    cells: dict[str, str] = {}
    pictures: dict[str, bytes] = {}
    links: dict[str, str] = {}
    for position, index in enumerate(indices):
        if kinds[index] == "picture":
            pictures[index] = draw(st.binary(min_size=1, max_size=40))
            cells[index] = base64.b64encode(pictures[index]).decode()
        elif kinds[index] == "link":
            # Often the next row, so that chains of several references form; else any row, itself included.
            following = indices[(position + 1) % count]
            links[index] = cells[index] = draw(st.one_of(st.just(following), st.sampled_from(indices)))
        else:
            cells[index] = "" if kinds[index] == "empty" else "!" + draw(st.text("abc-*", max_size=5))
    expected: dict[str, bytes] = dict(pictures)
    for index, target in links.items():
        seen = {index}
        while target in links and target not in seen:
            seen.add(target)
            target = links[target]
        if target in pictures:
            expected[index] = pictures[target]
    return [(index, cells[index]) for index in indices], expected, set(indices) - set(expected)


@given(tables())
def test_tsvs_give_each_rows_picture_following_references(table: tuple) -> None:
    rows, expected, without = table
    text = "index\tquestion\timage\n" + "".join(f"{index}\tWhich?\t{cell}\n" for index, cell in rows)
    started = time.monotonic()
    with in_file(text.encode(), ".tsv") as file:
        found, problems = tsv_pictures(file)
    assert time.monotonic() - started < SECONDS
    assert dict(found) == expected and len(found) == len(expected)
    assert {problem.split(":", 1)[1].split(" ")[0] for problem in problems} == without
    assert len(problems) == len(without)


@given(tables(), st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=4)), max_size=6))
def test_mutated_tsvs_give_pictures_or_one_error(table: tuple, edits: list) -> None:
    rows, _, _ = table
    data = bytearray(("index\timage\n" + "".join(f"{index}\t{cell}\n" for index, cell in rows)).encode())
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + len(replacement)] = replacement
    started = time.monotonic()
    try:
        with in_file(bytes(data), ".tsv") as file:
            found, _ = tsv_pictures(file)
    except LlavaMixesError as error:
        assert len(str(error)) < 1000
    else:
        assert all(isinstance(picture, bytes) and picture for _, picture in found)
        assert len({index for index, _ in found}) == len(found)
    assert time.monotonic() - started < SECONDS
