"""Recipes: schema validation (errors name the key and the allowed values), seeded sampling, the shipped
recipes on the demo playground with every row accounted for, the same ids from two builds, `build --recipe`, and
the config `recipe` of `load_dataset`: cached as a whole, rebuilt when the recipe, a source or a benchmark changes."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import datasets
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.building.entry import Built, build
from llava_mixes.building.mixing import DUPLICATE_SPLIT
from llava_mixes.building.report import RECIPE_COUNTS, load_report, recipe_accounted
from llava_mixes.cli.main import main
from llava_mixes.decontam import CONTAMINATED_SPLIT
from llava_mixes.errors import ConfigError, LlavaMixesError
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground
from llava_mixes.playground.layout import ANNOTATION_FILE
from llava_mixes.recipes.recipe import TOP_KEYS, Recipe, RecipeSource, load_recipe, parse_recipe, shipped_recipes

PLAIN = tuple(SOURCES)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sources": ["mix665k"], "dedupe": {}}, r"unknown key 'dedupe'; allowed keys: \['name'"),
        ({"sources": ["nope"]}, r"unknown sources\[\].config value 'nope'; choose one of \['mix665k'"),
        ({"sources": [{"config": "mix665k", "sample": 0}]}, r"sample=0 is not allowed"),
        ({"sources": [{"config": "mix665k", "sample": 1000.5}]}, r"a factor in \(1, 1000\]"),
        ({"sources": [{"config": "mix665k", "cap": 0}]}, r"sources\[mix665k\].cap=0 is not allowed; give a row count"),
        ({"sources": ["mix665k"], "shares": {"vqa": 0.5}}, r"sum to 0.5, not 1"),
        ({"sources": ["mix665k"], "size": 10}, r"size=10 is not allowed without shares"),
        (
            {"sources": ["mix665k"], "dedup": {"threshold": 0.8, "scope": "world"}},
            r"unknown dedup.scope value 'world'; choose one of \['recipe'",
        ),
        ({"sources": ["mix665k"], "dedup": {"scope": "recipe"}}, r"'threshold' is missing"),
        (
            {"sources": ["mix665k"], "duplicate_rows": "drop"},
            r"unknown duplicate_rows value 'drop'; choose one of \['remove', 'keep'\]",
        ),
        ({"sources": ["mix665k", "mix665k"]}, r"list each config once"),
        ({"seed": 1}, r"'sources' is missing"),
    ],
)
def test_bad_recipes_name_the_key_and_the_allowed_values(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_recipe(data, "bad", PLAIN)


def test_sampling_is_seeded() -> None:
    fraction = RecipeSource("mix665k", 0.5)
    assert fraction.pick(10, 0, 1).tolist() == fraction.pick(10, 0, 1).tolist()
    assert len(fraction.pick(10, 0, 1)) == 5 and len(RecipeSource("mix665k", 3).pick(10, 7, 0)) == 3
    assert RecipeSource("mix665k", 30).pick(10, 7, 0).tolist() == [row for row in range(10) for _ in range(3)]
    assert RecipeSource("mix665k", 30, cap=12).counts(10, 7, 0).sum() == 12
    assert fraction.pick(100, 0, 1).tolist() != fraction.pick(100, 1, 1).tolist()


def test_the_digest_follows_the_content() -> None:
    one = parse_recipe({"sources": ["mix665k"]}, "a", PLAIN)
    assert one.digest() == parse_recipe({"sources": ["mix665k"]}, "a", PLAIN).digest()
    assert one.digest() != parse_recipe({"sources": ["mix665k"], "seed": 1}, "a", PLAIN).digest()


def build_recipe(recipe: str | Path, playground: Playground, tmp_path: Path) -> Built:
    kwargs = {"recipe": str(recipe), "content_cache_dir": str(tmp_path / "cc")}
    return build("recipe", str(playground.root), str(tmp_path / "hf"), **kwargs)


def counts(built: Built) -> dict[str, dict[str, int]]:
    return built.report.recipe["sources"]


@pytest.mark.parametrize("name", ["llava-1.5", "llava-en-all", "llava-bilingual"])
def test_shipped_recipes_build_on_the_playground(playground: Playground, tmp_path: Path, name: str) -> None:
    assert name in shipped_recipes()
    built = build_recipe(name, playground, tmp_path)
    assert recipe_accounted(built.report)
    assert all(c["rows_in"] == sum(c[key] for key in RECIPE_COUNTS[1:]) for c in counts(built).values())
    kept = sum(c["kept"] for c in counts(built).values())
    assert kept == len(built.dataset[schema.TRAIN_SPLIT]) > 0
    assert sum(c["duplicate_rows"] for c in counts(built).values()) == len(built.dataset[DUPLICATE_SPLIT])
    # A second build from a fresh `datasets` cache (the recipe's steps run again) gives the same ids.
    shutil.rmtree(tmp_path / "hf")
    again = build_recipe(name, playground, tmp_path)
    assert again.dataset[schema.TRAIN_SPLIT][schema.ID] == built.dataset[schema.TRAIN_SPLIT][schema.ID]
    if name == "llava-en-all":
        # Later sources repeat the 665K mix's rows and pictures: they lose rows as exact copies or near copies.
        svit = counts(built)["svit-mix665k"]
        assert len(built.dataset[schema.REMOVED_SPLIT]) > 0 and svit["duplicate_rows"] + svit["removed"] > 0


def test_a_recipe_with_sampling_and_decontamination(
    playground: Playground, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evals = write_eval_playground(playground.root)
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "seed: 3\nsources:\n  - mix665k\n  - {config: sharegpt4v-mix665k, sample: 0.5}\n"
        f"dedup: {{threshold: 0.8}}\ndecontaminate: {{references: [{str(evals.root)!r}], embedder: thumbnail}}\n"
    )
    built = build_recipe(recipe, playground, tmp_path)
    assert recipe_accounted(built.report)
    assert counts(built)["sharegpt4v-mix665k"]["not_sampled"] > 0
    assert len(built.dataset[CONTAMINATED_SPLIT]) == sum(c["contaminated"] for c in counts(built).values()) > 0
    assert set(built.dataset) == {schema.TRAIN_SPLIT, schema.REMOVED_SPLIT, CONTAMINATED_SPLIT, DUPLICATE_SPLIT}
    stats = tmp_path / "mix.stats.json"
    args = ["build", "--recipe", str(recipe), "--data-dir", str(playground.root), "--cache-dir", str(tmp_path / "hf")]
    assert main([*args, "--content-cache-dir", str(tmp_path / "cc"), "--stats-json", str(stats)]) == 0
    printed = capsys.readouterr().out
    assert "pope" in printed and built.report.recipe["digest"][:12] in printed and "not sampled" in printed
    assert json.loads(stats.read_text())["recipe"]["sources"] == counts(built)


def test_build_refuses_a_recipe_and_a_config_together(
    playground: Playground, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["build", "mix665k", "--recipe", "llava-1.5", "--data-dir", str(playground.root)]) != 0
    assert "give exactly one of CONFIG and --recipe" in caplog.text
    assert main(["build", "--recipe", "llava-1.5", "--threshold", "0.8", "--data-dir", str(playground.root)]) != 0
    assert "--threshold 0.8 is not allowed with --recipe: set dedup.threshold in the recipe" in caplog.text


def load(playground: Playground, recipe: str | Path, tmp_path: Path) -> datasets.DatasetDict:
    kwargs = {"recipe": str(recipe), "content_cache_dir": str(tmp_path / "cc")}
    return datasets.load_dataset("llava_mixes", "recipe", data_dir=str(playground.root), **kwargs)


def arrow_files(dataset: datasets.DatasetDict) -> set[str]:
    return {item["filename"] for split in dataset.values() for item in split.cache_files}


def test_load_dataset_builds_a_recipe_once_and_again_when_its_content_changes(
    playground: Playground, tmp_path: Path
) -> None:
    recipe = tmp_path / "mix.yaml"
    recipe.write_text("name: mix\nsources: [mix665k, sharegpt4v-mix665k]\n")
    first = load(playground, recipe, tmp_path)
    assert set(first) == {schema.TRAIN_SPLIT, DUPLICATE_SPLIT}
    report = load_report(first)
    assert report.config_name == "recipe" and recipe_accounted(report)
    assert report.rows_in == sum(c["rows_in"] for c in report.recipe["sources"].values())
    again = load(playground, recipe, tmp_path)
    assert arrow_files(again) == arrow_files(first)
    # The same content (its name included) under another file name is the same build; a changed content is not.
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(recipe.read_text())
    assert arrow_files(load(playground, renamed, tmp_path)) == arrow_files(first)
    recipe.write_text("name: mix\nsources: [mix665k, {config: sharegpt4v-mix665k, sample: 3}]\n")
    edited = load(playground, recipe, tmp_path)
    assert arrow_files(edited).isdisjoint(arrow_files(first))
    assert load_report(edited).recipe["sources"]["sharegpt4v-mix665k"]["not_sampled"] > 0
    assert len(edited[schema.TRAIN_SPLIT]) < len(first[schema.TRAIN_SPLIT])


def test_an_edited_source_rebuilds_the_recipe(playground: Playground, tmp_path: Path) -> None:
    first = load(playground, "llava-bilingual", tmp_path)
    path = playground.root / ANNOTATION_FILE
    rows = json.loads(path.read_text())
    rows[0]["conversations"][1]["value"] = "an edited answer"
    path.write_text(json.dumps(rows, indent=1))
    after = load(playground, "llava-bilingual", tmp_path)
    texts = [row[schema.CONVERSATIONS][1]["value"] for row in after[schema.TRAIN_SPLIT].remove_columns(schema.IMAGE)]
    before = [row[schema.CONVERSATIONS][1]["value"] for row in first[schema.TRAIN_SPLIT].remove_columns(schema.IMAGE)]
    assert "an edited answer" in texts and "an edited answer" not in before


def test_a_changed_benchmark_rebuilds_the_recipe(playground: Playground, tmp_path: Path) -> None:
    evals = write_eval_playground(playground.root)
    recipe = tmp_path / "mix.yaml"
    references = f"{{references: [{str(evals.root)!r}], embedder: thumbnail}}"
    recipe.write_text(f"sources: [mix665k]\ndecontaminate: {references}\n")
    first = load(playground, recipe, tmp_path)
    assert len(first[CONTAMINATED_SPLIT]) > 0 and "pope" in benchmarks(first)
    shutil.rmtree(evals.root / "pope")
    after = load(playground, recipe, tmp_path)
    assert 0 < len(after[CONTAMINATED_SPLIT]) < len(first[CONTAMINATED_SPLIT])
    assert "pope" not in benchmarks(after)


def benchmarks(dataset: datasets.DatasetDict) -> set[str]:
    return {item["benchmark"] for item in load_report(dataset).decontamination["benchmarks"]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"config 'recipe' needs recipe=.*\['llava-1.5', 'llava-bilingual', 'llava-en-all', 'llava-next-665k'\]"),
        ({"recipe": "nope"}, r"recipe='nope' is neither a file nor a shipped recipe"),
        ({"recipe": "llava-1.5", "dedup_threshold": 0.8}, r"dedup_threshold=0.8 is not allowed for config 'recipe'"),
    ],
)
def test_the_recipe_config_names_what_is_wrong(playground: Playground, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        datasets.load_dataset("llava_mixes", "recipe", data_dir=str(playground.root), **kwargs)


def test_recipe_applies_to_the_recipe_config_only(playground: Playground) -> None:
    with pytest.raises(ConfigError, match=r"recipe='llava-1.5' is not allowed for config 'mix665k'"):
        datasets.load_dataset("llava_mixes", "mix665k", data_dir=str(playground.root), recipe="llava-1.5")


def test_a_recipe_refuses_data_files_that_name_no_source(playground: Playground, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nsources:\n  - mix665k\n  - sharegpt4v-mix665k\n")
    annotation = str(playground.root / "llava_v1_5_mix665k.json")
    with pytest.raises(ConfigError, match=r"not allowed for config 'recipe': name each source's files.*CONFIG is one"):
        build("recipe", str(playground.root), str(tmp_path / "hf"), recipe=str(recipe), data_files=annotation)
    caches = ["--cache-dir", str(tmp_path / "hf"), "--content-cache-dir", str(tmp_path / "cc")]
    argv = ["build", "--recipe", str(recipe), "--data-dir", str(playground.root), "--data-files", annotation]
    assert main([*argv, *caches]) == 2
    assert not (tmp_path / "hf").exists()


# Property tests of the recipe reader: generated, random and mutated YAML gives the right recipe or one
# `LlavaMixesError` with a short message, in bounded time.

SECONDS = 5.0
yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.sampled_from(PLAIN)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from([*TOP_KEYS, "config", "sample", "cap", "vqa", "x"]), inner),
    ),
    max_leaves=20,
)
samples = st.one_of(
    st.just("all"), st.integers(1, 10**6), st.floats(0.0, 1.0, exclude_min=True), st.floats(1.0, 1000.0)
)
caps = st.one_of(st.none(), st.integers(1, 10**8))
TASKS = ("conversation", "vqa", "caption", "ocr_caption", "任务 | 2")


@st.composite
def valid_shares(draw: st.DrawFn) -> dict[str, float]:
    """Shares of 1-5 tasks that sum to 1 within the tolerance."""
    tasks = draw(st.lists(st.sampled_from(TASKS), min_size=1, max_size=5, unique=True))
    weights = [draw(st.integers(1, 1000)) for _ in tasks]
    return {task: weight / sum(weights) for task, weight in zip(tasks, weights, strict=True)}


@st.composite
def valid_recipes(draw: st.DrawFn) -> dict:
    sources = draw(st.lists(st.sampled_from(PLAIN), min_size=1, max_size=4, unique=True))
    data: dict = {"sources": [{"config": config, "sample": draw(samples)} for config in sources]}
    for source in data["sources"]:
        if (cap := draw(caps)) is not None:
            source["cap"] = cap
    if (cap := draw(caps)) is not None:
        data["cap"] = cap
    if draw(st.booleans()):
        data["shares"] = draw(valid_shares())
        if draw(st.booleans()):
            data["size"] = draw(st.integers(1, 10**8))
    data["seed"] = draw(st.integers(0, 2**63 - 1))
    data["name"] = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_+=-]{0,20}", fullmatch=True))
    if draw(st.booleans()):
        data["dedup"] = {"threshold": draw(st.floats(0.0, 1.0, exclude_min=True)), "scope": "group"}
    data["duplicate_rows"] = draw(st.sampled_from(["remove", "keep"]))
    return data


@st.composite
def perturbed_recipes(draw: st.DrawFn) -> dict:
    """A valid recipe with some of its values (top level, a source's, dedup's) replaced by any YAML value or
    removed: wrong types and missing keys everywhere."""
    data = draw(valid_recipes())
    mappings = [data, *data["sources"], *([data["dedup"]] if "dedup" in data else [])]
    for _ in range(draw(st.integers(1, 3))):
        mapping = draw(st.sampled_from(mappings))
        key = draw(st.sampled_from(sorted(mapping)))
        if draw(st.booleans()):
            mapping.pop(key)
        else:
            mapping[key] = draw(yaml_values)
        if not mapping:
            break
    return data


def read(text: str | bytes, folder: Path) -> object:
    path = folder / "recipe.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    started = time.monotonic()
    try:
        return load_recipe(path, PLAIN)
    except LlavaMixesError as error:
        assert len(str(error)) < 1500, str(error)[:300]
        return error
    finally:
        assert time.monotonic() - started < SECONDS


@given(valid_recipes())
def test_a_generated_recipe_reads_back_as_written(tmp_path_factory: pytest.TempPathFactory, data: dict) -> None:
    recipe = read(yaml.safe_dump(data), tmp_path_factory.mktemp("r"))
    assert isinstance(recipe, Recipe), recipe
    assert recipe.name == data["name"] and recipe.seed == data["seed"]
    assert [(source.config, source.sample) for source in recipe.sources] == [
        (source["config"], source["sample"]) for source in data["sources"]
    ]
    assert (recipe.dedup is None) == ("dedup" not in data) and recipe.duplicate_rows == data["duplicate_rows"]
    assert [source.cap for source in recipe.sources] == [source.get("cap") for source in data["sources"]]
    assert (recipe.cap, recipe.size) == (data.get("cap"), data.get("size"))
    assert recipe.shares == (tuple(sorted(data["shares"].items())) if "shares" in data else None)
    # The settings read back as the same recipe (the card's YAML is them).
    settings = {key: value for key, value in recipe.to_json().items() if value is not None}
    assert parse_recipe(settings, "other", PLAIN).digest() == recipe.digest()


@given(yaml_values)
def test_any_yaml_data_gives_a_recipe_or_one_error(tmp_path_factory: pytest.TempPathFactory, data: object) -> None:
    read(yaml.safe_dump(data), tmp_path_factory.mktemp("r"))


@given(perturbed_recipes())
def test_a_recipe_with_wrong_values_gives_a_recipe_or_one_error(
    tmp_path_factory: pytest.TempPathFactory, data: dict
) -> None:
    read(yaml.safe_dump(data), tmp_path_factory.mktemp("r"))


@given(st.text(max_size=400))
def test_any_text_gives_a_recipe_or_one_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    read(text, tmp_path_factory.mktemp("r"))


@given(valid_recipes(), st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), min_size=1, max_size=6))
def test_a_mutated_recipe_gives_a_recipe_or_one_error(
    tmp_path_factory: pytest.TempPathFactory, data: dict, edits: list
) -> None:
    text = bytearray(yaml.safe_dump(data).encode())
    for position, replacement in edits:
        at = position % (len(text) + 1)
        text[at : at + len(replacement)] = replacement
    read(bytes(text), tmp_path_factory.mktemp("r"))


@given(
    st.lists(
        st.sampled_from(["&a ", "*a", "!!python/object ", "<<: ", "[", "{", "? ", "- ", ": ", "\n  "]), max_size=30
    )
)
def test_yaml_syntax_soup_gives_a_recipe_or_one_error(tmp_path_factory: pytest.TempPathFactory, pieces: list) -> None:
    read("sources: [mix665k]\n" + "".join(pieces), tmp_path_factory.mktemp("r"))
