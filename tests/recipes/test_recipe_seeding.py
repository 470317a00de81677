"""Recipe sampling (`RecipeSource.pick`, and `mix_recipe` through a real build): the same recipe takes the same
rows in any process, another seed or another place in the recipe takes other rows, the seed and the place do not
blur into one number, appending a source leaves the earlier sources' rows alone, and sampled rows keep their
source order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.building.entry import build
from llava_mixes.playground import Playground
from llava_mixes.recipes.recipe import RecipeSource
from llava_mixes.recipes.sampling import take_shares

HALF = RecipeSource("mix665k", 0.5)


def picks_in_another_process(calls: list[tuple[int, int, int]], hash_seed: str) -> list[list[int]]:
    """`HALF.pick(rows, seed, position)` for each call, computed by a fresh interpreter with `PYTHONHASHSEED`."""
    code = (
        "import json, sys\n"
        "from llava_mixes.recipes.recipe import RecipeSource\n"
        "calls = json.loads(sys.argv[1])\n"
        "print(json.dumps([RecipeSource('mix665k', 0.5).pick(*call).tolist() for call in calls]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(calls)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_same_seed_picks_the_same_rows_in_every_process() -> None:
    calls = [(100, 0, 0), (100, 3, 1), (1000, 12345, 4)]
    here = [HALF.pick(*call).tolist() for call in calls]
    assert picks_in_another_process(calls, "1") == here == picks_in_another_process(calls, "2")


def test_a_fixed_recipe_takes_the_rows_it_always_took() -> None:
    """Published recipe versions rest on these: a change here (another generator, another seeding, NumPy
    changing its stream) changes the rows of every sampled recipe, and must be a deliberate new version."""
    assert RecipeSource("mix665k", 5).pick(20, 7, 2).tolist() == [2, 4, 8, 16, 19]
    assert RecipeSource("mix665k", 0.25).pick(12, 0, 0).tolist() == [6, 7, 8]
    # Upsampling (every row twice, two drawn a third time), a cap above the size, and the shares' draw.
    assert RecipeSource("mix665k", 2.5).pick(4, 7, 2).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    assert RecipeSource("mix665k", 7, cap=6).pick(4, 0, 0).tolist() == [0, 1, 2, 2, 3, 3]
    counts = [np.array([1, 2, 1, 1]), np.array([1, 1, 3])]
    codes = [np.array([0, 1, 0, 1]), np.array([1, 0, 1])]
    taken = take_shares(counts, codes, ["a", "b"], {"a": 3, "b": 4}, 11)
    assert [each.tolist() for each in taken] == [[1, 1, 1, 0], [0, 1, 3]]


def test_each_seed_picks_other_rows() -> None:
    picks = {tuple(HALF.pick(100, seed, 0).tolist()) for seed in range(20)}
    assert len(picks) == 20


def test_each_place_in_the_recipe_picks_other_rows() -> None:
    picks = {tuple(HALF.pick(100, 0, position).tolist()) for position in range(20)}
    assert len(picks) == 20


@pytest.mark.parametrize(("one", "other"), [((0, 1), (1, 0)), ((2, 5), (5, 2)), ((3, 4), (4, 3)), ((1, 2), (2, 1))])
def test_seed_and_place_are_not_summed_or_swapped(one: tuple[int, int], other: tuple[int, int]) -> None:
    assert HALF.pick(100, *one).tolist() != HALF.pick(100, *other).tolist()


@given(
    rows=st.integers(0, 400),
    sample=st.one_of(st.just("all"), st.integers(1, 1500), st.floats(1e-3, 1.0), st.floats(1.0, 5.0)),
    cap=st.one_of(st.none(), st.integers(1, 600)),
    seed=st.integers(0, 2**63 - 1),
    position=st.integers(0, 50),
)
def test_a_pick_is_a_sorted_sample_of_the_promised_size(
    rows: int, sample: str | int | float, cap: int | None, seed: int, position: int
) -> None:
    """A pick takes `sample` rows (a count, or a float times the rows, at least one) within `cap`; above the
    source's size every row is taken the same number of times, give or take one."""
    source = RecipeSource("mix665k", sample, cap=cap)
    picked = source.pick(rows, seed, position)
    if rows == 0:
        wanted = 0
    elif sample == "all":
        wanted = rows
    elif isinstance(sample, int):
        wanted = sample
    else:
        wanted = max(1, round(sample * rows))  # a fraction keeps at least one row of a source with any
    wanted = wanted if cap is None else min(wanted, cap)
    assert picked.dtype == np.int64 and len(picked) == wanted
    assert (np.diff(picked) >= 0).all() and (len(picked) == 0 or 0 <= picked[0] <= picked[-1] < rows)
    times = np.bincount(picked, minlength=rows)
    if rows:
        assert times.max() - times.min() <= 1 and times.min() == wanted // rows
    assert picked.tolist() == source.pick(rows, seed, position).tolist()


def plain_ids(playground: Playground, tmp_path: Path, config: str) -> list[str]:
    """The `train` ids of a source's plain build, in order (what a recipe samples from)."""
    built = build(config, str(playground.root), str(tmp_path / "hf"), content_cache_dir=str(tmp_path / "cc"))
    return built.dataset[schema.TRAIN_SPLIT][schema.ID]


def recipe_ids(playground: Playground, tmp_path: Path, name: str, text: str) -> dict[str, list[str]]:
    """Per source config, the ids the recipe in `text` keeps in `train`, in their order there."""
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(f"name: {name}\nduplicate_rows: keep\n{text}")
    kwargs = {"recipe": str(recipe), "content_cache_dir": str(tmp_path / "cc")}
    train = build("recipe", str(playground.root), str(tmp_path / "hf"), **kwargs).dataset[schema.TRAIN_SPLIT]
    configs = {SOURCES[config].name: config for config in SOURCES}
    found: dict[str, list[str]] = {}
    for source, row_id in zip(train[schema.SOURCE], train[schema.ID], strict=True):
        found.setdefault(configs[source], []).append(row_id)
    return found


SAMPLED = ("mix665k", "sharegpt4v-mix665k", "textocr-gpt4v")


def test_a_recipe_takes_each_sources_pick_by_its_seed_and_place(playground: Playground, tmp_path: Path) -> None:
    """Each source's rows are its plain build's rows at `pick(rows, recipe seed, place)`, in source order."""
    sources = "".join(f"  - {{config: {config}, sample: 0.5}}\n" for config in SAMPLED)
    taken = recipe_ids(playground, tmp_path, "seeded", f"seed: 5\nsources:\n{sources}")
    for position, config in enumerate(SAMPLED):
        everything = plain_ids(playground, tmp_path, config)
        picked = RecipeSource(config, 0.5).pick(len(everything), 5, position)
        assert 0 < len(picked) < len(everything)
        assert taken[config] == [everything[index] for index in picked]
        places = [everything.index(row_id) for row_id in taken[config]]
        assert places == sorted(places)  # the source's own order


def test_appending_a_source_leaves_the_earlier_samples_alone(playground: Playground, tmp_path: Path) -> None:
    first = "seed: 9\nsources:\n  - {config: mix665k, sample: 0.5}\n  - {config: sharegpt4v-mix665k, sample: 3}\n"
    before = recipe_ids(playground, tmp_path, "two", first)
    after = recipe_ids(playground, tmp_path, "three", first + "  - {config: textocr-gpt4v, sample: 0.5}\n")
    assert set(after) == {*before, "textocr-gpt4v"}
    assert {config: after[config] for config in before} == before
    other_seed = recipe_ids(playground, tmp_path, "two-other-seed", first.replace("seed: 9", "seed: 10"))
    assert other_seed["mix665k"] != before["mix665k"]
