"""Hostile and careless recipe files: names that lead out, YAML that grows or names Python types, bytes that
are not UTF-8, wrong types everywhere, and paths read from the wrong folder. Each gives one `LlavaMixesError`
(or a CLI exit 2) that names the problem in a short message, or the right recipe."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_mixes.builders import SOURCES
from llava_mixes.building.entry import build
from llava_mixes.cli.build import write_demo_recipe
from llava_mixes.cli.main import main
from llava_mixes.errors import ConfigError, LlavaMixesError, PathEscapeError
from llava_mixes.playground import Playground
from llava_mixes.recipes.recipe import MAX_DEPTH, MAX_RECIPE_BYTES, RecipeSource, load_recipe

FEATURE = "recipes"

PLAIN = tuple(SOURCES)
MESSAGE_LIMIT = 1200
"""No error message about a recipe grows with the input beyond this."""


def write(folder: Path, text: str | bytes, name: str = "mix.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def refused(path: Path, match: str, error: type[LlavaMixesError] = ConfigError) -> str:
    started = time.monotonic()
    with pytest.raises(error, match=match) as caught:
        load_recipe(path, PLAIN)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert len(message) < MESSAGE_LIMIT, message[:300]
    return message


def alias_bomb(levels: int = 10, width: int = 9) -> str:
    """A name whose last item holds `width ** (levels - 1)` leaves through aliases, in a few hundred bytes."""
    items = ["&a0 [lol]"] + [f"&a{level} [{', '.join([f'*a{level - 1}'] * width)}]" for level in range(1, levels)]
    return f"name: [{', '.join(items)}]\nsources: [mix665k]\n"


# The cases.


@pytest.mark.adversarial("error")
def test_a_recipe_name_that_leads_out_of_the_working_folder_is_refused(
    playground: Playground, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    work = tmp_path / "w1" / "w2" / "w3" / "w4"
    work.mkdir(parents=True)
    recipe = write(tmp_path / "recipes", 'name: "x/../../../../ESC"\nsources: [mix665k]\n')
    monkeypatch.chdir(work)
    caches = ["--cache-dir", str(tmp_path / "hf"), "--content-cache-dir", str(tmp_path / "cc")]
    assert main(["build", "--recipe", str(recipe), "--data-dir", str(playground.root), *caches]) == 2
    assert "recipe name 'x/../../../../ESC' is not allowed" in caplog.text
    assert not list(tmp_path.rglob("ESC.stats.json")) and not (tmp_path / "hf").exists()
    refused(recipe, r"recipe name 'x/\.\./\.\./\.\./\.\./ESC' is not allowed", PathEscapeError)


CHILD = textwrap.dedent(
    """
    import resource, sys, time
    from llava_mixes.errors import LlavaMixesError
    from llava_mixes.recipes.recipe import load_recipe

    with open("/proc/self/statm") as handle:
        virtual = int(handle.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (virtual + (1 << 30), resource.RLIM_INFINITY))
    started = time.monotonic()
    try:
        load_recipe(sys.argv[1])
    except LlavaMixesError as error:
        print(type(error).__name__, len(str(error)), round(time.monotonic() - started, 3))
        print(str(error)[:200])
    """
)


@pytest.mark.adversarial("error")
def test_nine_levels_of_nine_aliases_are_refused_at_once_in_a_short_message(tmp_path: Path) -> None:
    recipe = write(tmp_path, alias_bomb())
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(recipe)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-1500:]
    kind, length, seconds = done.stdout.splitlines()[0].split()
    assert kind == "ConfigError" and int(length) < MESSAGE_LIMIT and float(seconds) < 5
    assert "may not hold an anchor" in done.stdout


@pytest.mark.adversarial("error")
def test_a_recipe_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    recipe = write(tmp_path, b"sources: [mix665k]\nname: caf\xe9\n")
    message = refused(recipe, r"is not UTF-8 text: byte 28 \(0xe9\)")
    assert str(recipe) in message


@pytest.mark.adversarial("correct")
def test_relative_references_are_read_from_the_recipe_folder_not_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "recipes"
    (folder / "eval" / "pope").mkdir(parents=True)
    (tmp_path / "work" / "only-here").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    recipe = load_recipe(write(folder, "sources: [mix665k]\ndecontaminate: {references: [eval/pope]}\n"), PLAIN)
    assert recipe.decontaminate is not None
    assert recipe.decontaminate.references == (str(folder / "eval" / "pope"),)
    # A path that exists only relative to the working folder is not found, and the error says so.
    lost = write(folder, "sources: [mix665k]\ndecontaminate: {references: [only-here]}\n", "lost.yaml")
    message = refused(lost, r"decontaminate.references: 'only-here' not found")
    assert "read from the recipe file's folder" in message and "not allowed" not in message


@pytest.mark.adversarial("correct")
def test_the_demo_recipe_builds_from_any_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo" / "playground" / "eval").mkdir(parents=True)
    recipe = write_demo_recipe(Path("demo"), Path("demo") / "playground" / "eval")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    spec = load_recipe(tmp_path / recipe, PLAIN)
    assert spec.decontaminate is not None
    assert Path(spec.decontaminate.references[0]).resolve() == (tmp_path / "demo" / "playground" / "eval").resolve()


# YAML that grows, nests or names Python types.


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "sources: !!python/object/apply:os.system ['touch PWNED']\n",
            r"may not hold the tag 'tag:yaml.org,2002:python",
        ),
        ("sources: !!python/name:os.system\n", r"may not hold the tag"),
        ("name: !!binary aGVsbG8=\nsources: [mix665k]\n", r"may not hold the tag 'tag:yaml.org,2002:binary'"),
        ("sources: !!set {mix665k: null}\n", r"may not hold the tag 'tag:yaml.org,2002:set'"),
        ("sources: !local [mix665k]\n", r"may not hold the tag '!local'"),
        ("base: &b [mix665k]\nsources: *b\n", r"may not hold an anchor"),
        ("sources: *nowhere\n", r"may not hold an alias|found undefined alias"),
        ("<<: {seed: 1}\nsources: [mix665k]\n", r"may not hold a merge key"),
        ("sources: [mix665k]\nsources: [zh600k]\n", r"the key 'sources' twice"),
        ("sources: [{config: mix665k, config: zh600k}]\n", r"the key 'config' twice"),
        ("? [a, b]\n: 1\nsources: [mix665k]\n", r"a key that is not a plain value"),
        ("sources: [mix665k]\n---\nsources: [zh600k]\n", r"expected a single document"),
        ("sources: [mix665k\n", r"not a plain YAML recipe"),
        ("sources: [mix665k]\nname: a\x00b\n", r"not a plain YAML recipe"),
    ],
    ids=[
        "python-object-apply",
        "python-name",
        "binary",
        "set",
        "local-tag",
        "anchor",
        "undefined-alias",
        "merge-key",
        "duplicate-top-key",
        "duplicate-source-key",
        "unhashable-key",
        "two-documents",
        "unclosed-list",
        "nul-byte",
    ],
)
def test_yaml_beyond_plain_data_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, match: str
) -> None:
    monkeypatch.chdir(tmp_path)
    refused(write(tmp_path, text), match)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 30_000])
def test_deep_nesting_is_refused_in_bounded_time(tmp_path: Path, depth: int) -> None:
    refused(write(tmp_path, "sources: " + "[" * depth + "]" * depth + "\n"), rf"nesting deeper than {MAX_DEPTH}")


@pytest.mark.adversarial("error")
def test_a_recipe_file_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    text = "sources: [mix665k]\n" + ("# padding\n" * (MAX_RECIPE_BYTES // 10 + 1))
    refused(write(tmp_path, text), rf"larger than {MAX_RECIPE_BYTES:,} bytes")


@pytest.mark.adversarial("error")
def test_many_small_nodes_under_the_cap_are_read_in_bounded_time(tmp_path: Path) -> None:
    count = (MAX_RECIPE_BYTES - 64) // 2
    refused(
        write(tmp_path, "sources: [" + ",".join(["a"] * (count // 2)) + "]\n"),
        r"unknown sources\[\]\.config value 'a'",
    )


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xff\xfes\x00o\x00u\x00", r"not UTF-8 text: byte 0 \(0xff\)"),
        (b"", r"recipe must be a mapping .* got None"),
        (b"- mix665k\n", r"recipe must be a mapping"),
        (b"just text\n", r"recipe must be a mapping .* got 'just text'"),
    ],
    ids=["utf16", "empty", "top-level-list", "top-level-string"],
)
def test_files_that_are_not_a_recipe_mapping(tmp_path: Path, data: bytes, match: str) -> None:
    refused(write(tmp_path, data), match)


@pytest.mark.adversarial("correct")
def test_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, "\ufeffname: bom\nsources: [mix665k]\n"), PLAIN)
    assert recipe.name == "bom" and recipe.sources == (RecipeSource("mix665k"),)


# Wrong types and values, field by field.


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sources: [{config: mix665k, sample: .nan}]", r"sample=nan is not allowed"),
        ("sources: [{config: mix665k, sample: .inf}]", r"sample=inf is not allowed"),
        ("sources: [{config: mix665k, sample: -3}]", r"sample=-3 is not allowed; a count must be >= 1"),
        ("sources: [{config: mix665k, sample: 0.0}]", r"sample=0.0 is not allowed; a fraction"),
        ("sources: [{config: mix665k, sample: true}]", r"sample=True is not allowed"),
        ("sources: [{config: mix665k, sample: '50%'}]", r"sample='50%' is not allowed"),
        ("sources: [{config: mix665k, sample: [1]}]", r"sample=\[1\] is not allowed"),
        ("seed: -1\nsources: [mix665k]", r"seed=-1 is not allowed"),
        ("seed: 1.5\nsources: [mix665k]", r"seed=1.5 is not allowed"),
        ("seed: true\nsources: [mix665k]", r"seed=True is not allowed"),
        ("seed: .nan\nsources: [mix665k]", r"seed=nan is not allowed"),
        (
            "seed: 1180591620717411303424\nsources: [mix665k]",
            r"seed=.* is not allowed; give an integer in \[0, 2\*\*63\)",
        ),
        ("seed: " + "9" * 5000 + "\nsources: [mix665k]", r"holds a value that cannot be read"),
        ("seed: 2001-13-45\nsources: [mix665k]", r"holds a value that cannot be read: month"),
        ("seed: 2001-12-14\nsources: [mix665k]", r"seed=datetime.date\(2001, 12, 14\) is not allowed"),
        ("duplicate_rows: [remove]\nsources: [mix665k]", r"duplicate_rows=\['remove'\] is not allowed"),
        ("sources: [mix665k]\ndedup: {threshold: .nan}", r"dedup.threshold=nan is not allowed"),
        ("sources: [mix665k]\ndedup: {threshold: '0.8'}", r"dedup.threshold='0.8' is not allowed"),
        ("sources: [mix665k]\ndedup: {threshold: 0.8, scope: {}}", r"dedup.scope=\{\} is not allowed"),
        ("sources: [mix665k]\ndedup: {threshold: 0.8, embedder: 7}", r"dedup.embedder=7 is not allowed"),
        ("sources: [mix665k]\ndedup:", r"dedup: null is not allowed; leave the key out"),
        ("sources: [mix665k]\ndecontaminate:", r"decontaminate: null is not allowed"),
        ("sources: [mix665k]\ndecontaminate: {threshold: 0.9}", r"'references' is missing"),
        ("sources: [mix665k]\ndecontaminate: {references: []}", r"decontaminate.references=\[\] is not allowed"),
        ("sources: [mix665k]\ndecontaminate: {references: [3]}", r"decontaminate.references=\[3\] is not allowed"),
        ('sources: [mix665k]\ndecontaminate: {references: ["a\\0b"]}', r"references=\['a\\x00b'\] is not allowed"),
        ("sources: [mix665k]\ndecontaminate: {references: [../../nowhere]}", r"'../../nowhere' not found"),
        ("sources: [mix665k]\ndecontaminate: {references: [/no/such/folder]}", r"'/no/such/folder' not found"),
    ],
)
def test_wrong_values_name_the_key_and_what_is_allowed(tmp_path: Path, text: str, match: str) -> None:
    refused(write(tmp_path, text + "\n"), match)


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sources: [recipe]", r"unknown sources\[\].config value 'recipe'; choose one of"),
        ("sources: [no-such-config]", r"unknown sources\[\].config value 'no-such-config'; choose one of"),
        ("sources: [{sample: 3}]", r"sources\[\]: the key 'config' is missing"),
        ("sources: [null]", r"sources\[\] must be a mapping .* got None"),
        ("sources: mix665k", r"sources must be a list"),
        ("sources: []", r"sources=\[\] is not allowed"),
        ("sources: [mix665k, mix665k]", r"list each config once"),
    ],
    ids=["itself", "unknown", "no-config", "null", "string", "empty", "twice"],
)
def test_bad_sources_are_named(tmp_path: Path, text: str, match: str) -> None:
    refused(write(tmp_path, text + "\n"), match)


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    "name",
    ["'../up'", "'a/b'", "'.hidden'", "''", "'x' ", "7", "[a]", "'" + "n" * 300 + "'", "'tab\there'"],
    ids=["dotdot", "slash", "hidden", "empty", "trailing-space-ok-but-quoted", "int", "list", "long", "tab"],
)
def test_names_that_cannot_be_one_file_name_are_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f"name: {name}\nsources: [mix665k]\n")
    if name == "'x' ":
        assert load_recipe(path, PLAIN).name == "x"
        return
    refused(path, r"recipe name .* is not allowed: it becomes a file name", PathEscapeError)


@pytest.mark.adversarial("error")
def test_a_file_stem_that_cannot_be_a_name_asks_for_one(tmp_path: Path) -> None:
    refused(write(tmp_path, "sources: [mix665k]\n", "my mix.yaml"), r"set `name:` in the recipe", PathEscapeError)


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    "text",
    [
        "sources: [{config: '" + "c" * 60_000 + "'}]",
        "name: {" + ", ".join(f"k{i}: [{', '.join(['v'] * 50)}]" for i in range(200)) + "}\nsources: [mix665k]",
        "sources: [" + ", ".join(["mix665k"] * 6_000) + "]",
        "sources: [mix665k]\ndedup: {threshold: [" + ", ".join(["0.5"] * 10_000) + "]}",
    ],
    ids=["long-config", "wide-name", "repeated-source", "list-threshold"],
)
def test_error_messages_stay_short_whatever_the_value(tmp_path: Path, text: str) -> None:
    refused(write(tmp_path, text + "\n"), r"is not allowed|^unknown ", LlavaMixesError)


@pytest.mark.adversarial("error")
def test_a_folder_or_a_fifo_is_not_a_recipe(tmp_path: Path) -> None:
    refused(tmp_path, r"is neither a file nor a shipped recipe")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    refused(fifo, r"is neither a file nor a shipped recipe")


# Odd inputs that have a right answer.


@pytest.mark.adversarial("correct")
def test_a_tiny_fraction_keeps_at_least_one_row() -> None:
    assert len(RecipeSource("mix665k", 1e-9).pick(10, 0, 0)) == 1
    assert len(RecipeSource("mix665k", 1e-9).pick(0, 0, 0)) == 0


@pytest.mark.adversarial("correct")
def test_a_hub_id_that_is_no_path_stays_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "work" / "lmms-lab" / "POPE").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    recipe = load_recipe(write(tmp_path, "sources: [mix665k]\ndecontaminate: {references: [lmms-lab/POPE]}\n"), PLAIN)
    assert recipe.decontaminate is not None
    assert recipe.decontaminate.references == ("hf://datasets/lmms-lab/POPE",)


@pytest.mark.adversarial("correct")
def test_embedder_files_are_read_from_the_recipe_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "recipes" / "ckpt").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    text = "sources: [mix665k]\ndedup: {threshold: 0.9, embedder: sscd.pt}\n"
    text += "decontaminate: {references: [ckpt], embedder: ckpt}\n"
    recipe = load_recipe(write(tmp_path / "recipes", text), PLAIN)
    assert recipe.dedup is not None and recipe.decontaminate is not None
    assert recipe.dedup.embedder == str(tmp_path / "recipes" / "sscd.pt")
    assert recipe.decontaminate.embedder == str(tmp_path / "recipes" / "ckpt")
    assert load_recipe(write(tmp_path / "recipes", "sources: [mix665k]\ndedup: {threshold: 0.9}\n"), PLAIN).dedup


@pytest.mark.adversarial("error")
def test_the_cli_gives_one_line_for_a_bad_recipe(
    playground: Playground, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recipe = write(tmp_path, alias_bomb(3, 3))
    assert main(["build", "--recipe", str(recipe), "--data-dir", str(playground.root)]) == 2
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "may not hold an anchor" in errors[0].getMessage()
    assert "Traceback" not in caplog.text


# A source's data_files: names that lead out of data_dir, wrong types, links, missing files.


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("value", "match", "error"),
    [
        ("/etc/passwd", r"absolute path", PathEscapeError),
        ("[a.jsonl, /etc/passwd]", r"absolute path", PathEscapeError),
        ("[]", r"data_files=\[\] is not allowed", ConfigError),
        ("{a: b}", r"data_files=\{'a': 'b'\} is not allowed", ConfigError),
        ("7", r"data_files=7 is not allowed", ConfigError),
        ('""', r"data_files='' is not allowed", ConfigError),
        ("[[a.jsonl]]", r"is not allowed; give a file or a list", ConfigError),
        ("null", r"data_files=None is not allowed", ConfigError),
        ('"a\\0b"', r"is not allowed", ConfigError),
    ],
)
def test_data_files_that_are_no_relative_file_names_are_refused(
    tmp_path: Path, value: str, match: str, error: type[LlavaMixesError]
) -> None:
    refused(write(tmp_path, f"sources:\n  - {{config: mix665k, data_files: {value}}}\n"), match, error)


@pytest.mark.adversarial("error")
def test_too_many_data_files_are_refused_in_a_short_message(tmp_path: Path) -> None:
    names = ", ".join(f"f{index}.jsonl" for index in range(1001))
    refused(write(tmp_path, f"sources:\n  - {{config: mix665k, data_files: [{names}]}}\n"), r"list of 1-1000 files")


@pytest.mark.adversarial("error")
@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../outside.jsonl", r"leads outside"),
        ("link-out.jsonl", r"leads outside"),
        ("dangling.jsonl", r"not found under"),
        ("absent.jsonl", r"'absent.jsonl' not found under"),
        ("coco", r"is not a file"),
    ],
)
def test_data_files_outside_data_dir_or_absent_are_refused_before_any_build(
    playground: Playground, tmp_path: Path, name: str, match: str
) -> None:
    root = playground.root
    (root.parent / "outside.jsonl").write_text("{}\n")
    (root / "link-out.jsonl").symlink_to(root.parent / "outside.jsonl")
    (root / "dangling.jsonl").symlink_to(root / "nowhere.jsonl")
    (root / "coco").mkdir(exist_ok=True)
    recipe = write(tmp_path / "r", f"sources:\n  - {{config: textocr-gpt4v, data_files: {name!r}}}\n")
    argv = ["build", "--recipe", str(recipe), "--data-dir", str(root), "--cache-dir", str(tmp_path / "hf")]
    assert main(argv) == 2
    with pytest.raises(LlavaMixesError, match=match):
        build("recipe", str(root), str(tmp_path / "hf"), recipe=str(recipe))
    assert not list((tmp_path / "hf").glob("**/*.arrow"))


@pytest.mark.adversarial("error")
@pytest.mark.parametrize("value", ["textocr-gpt4v", "=x.jsonl", "nope=x.jsonl", "textocr-gpt4v="])
def test_the_per_source_flag_refuses_values_that_name_no_source(
    playground: Playground, tmp_path: Path, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    recipe = write(tmp_path, "sources: [textocr-gpt4v]\n")
    argv = ["build", "--recipe", str(recipe), "--data-dir", str(playground.root), "--data-files", value]
    assert main([*argv, "--cache-dir", str(tmp_path / "hf")]) == 2
    assert "['textocr-gpt4v']" in caplog.text


@pytest.mark.adversarial("rejected")
@settings(max_examples=60)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )
)
def test_any_data_files_value_gives_a_source_or_the_project_error(value: object) -> None:
    try:
        source = RecipeSource("mix665k", "all", value)  # type: ignore[arg-type]
    except LlavaMixesError:
        return
    assert all(isinstance(item, str) and item and not Path(item).is_absolute() for item in source.data_files)
