"""Recipes: schema validation (errors name the key and the allowed values), seeded sampling, the shipped
recipes on the demo playground with every row accounted for, the same ids from two builds, `build --recipe`."""

from __future__ import annotations

from pathlib import Path

import pytest

from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.cli.main import main
from llava_mixes.decontam import CONTAMINATED_SPLIT
from llava_mixes.errors import ConfigError
from llava_mixes.mixes.recipe import RecipeSource, load_recipe, parse_recipe, shipped_recipes
from llava_mixes.mixing import DUPLICATE_SPLIT, build_recipe
from llava_mixes.playground import Playground
from llava_mixes.playground.eval import write_eval_playground

PLAIN = tuple(SOURCES)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sources": ["mix665k"], "dedupe": {}}, r"unknown key 'dedupe'; allowed keys: \['name'"),
        ({"sources": ["nope"]}, r"sources\[\].config='nope' is not allowed; choose one of \['mix665k'"),
        ({"sources": [{"config": "mix665k", "sample": 0}]}, r"sample=0 is not allowed"),
        ({"sources": [{"config": "mix665k", "sample": 1.5}]}, r"fraction must lie in \(0, 1\]"),
        ({"sources": ["mix665k"], "dedup": {"threshold": 0.8, "scope": "world"}}, r"scope='world'.*\['recipe'"),
        ({"sources": ["mix665k"], "dedup": {"scope": "recipe"}}, r"'threshold' is missing"),
        ({"sources": ["mix665k"], "duplicate_rows": "drop"}, r"duplicate_rows='drop'.*\['remove', 'keep'\]"),
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
    assert RecipeSource("mix665k", 30).pick(10, 7, 0).tolist() == list(range(10))
    assert fraction.pick(100, 0, 1).tolist() != fraction.pick(100, 1, 1).tolist()


def test_the_digest_follows_the_content() -> None:
    one = parse_recipe({"sources": ["mix665k"]}, "a", PLAIN)
    assert one.digest() == parse_recipe({"sources": ["mix665k"]}, "a", PLAIN).digest()
    assert one.digest() != parse_recipe({"sources": ["mix665k"], "seed": 1}, "a", PLAIN).digest()


@pytest.mark.parametrize("name", ["llava-1.5", "llava-en-all", "llava-bilingual"])
def test_shipped_recipes_build_on_the_playground(playground: Playground, tmp_path: Path, name: str) -> None:
    assert name in shipped_recipes()
    kwargs = {"content_cache_dir": str(tmp_path / "cc")}
    built = build_recipe(name, str(playground.root), str(tmp_path / "hf"), **kwargs)
    assert built.accounted()
    again = build_recipe(load_recipe(name, PLAIN), str(playground.root), str(tmp_path / "hf"), **kwargs)
    assert again.dataset[schema.TRAIN_SPLIT][schema.ID] == built.dataset[schema.TRAIN_SPLIT][schema.ID]
    kept = sum(counts["kept"] for counts in built.sources.values())
    assert kept == len(built.dataset[schema.TRAIN_SPLIT]) > 0
    assert sum(c["duplicate_rows"] for c in built.sources.values()) == len(built.dataset[DUPLICATE_SPLIT])
    if name == "llava-en-all":
        # Later sources repeat the 665K mix's rows and pictures: they lose rows as exact copies or near copies.
        svit = built.sources["svit-mix665k"]
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
    kwargs = {"content_cache_dir": str(tmp_path / "cc")}
    built = build_recipe(recipe, str(playground.root), str(tmp_path / "hf"), **kwargs)
    assert built.accounted()
    assert built.sources["sharegpt4v-mix665k"]["not_sampled"] > 0
    assert len(built.dataset[CONTAMINATED_SPLIT]) == sum(c["contaminated"] for c in built.sources.values()) > 0
    args = ["build", "--recipe", str(recipe), "--data-dir", str(playground.root), "--cache-dir", str(tmp_path / "hf")]
    assert main([*args, "--content-cache-dir", str(tmp_path / "cc")]) == 0
    printed = capsys.readouterr().out
    assert "rows in" in printed and "pope" in printed and built.recipe.digest()[:12] in printed
