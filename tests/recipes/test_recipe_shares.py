"""The sampling arithmetic (`recipes.sampling`), property-tested: the shares' targets add up to the size and never
exceed a task's rows (or one `ConfigError` says which task runs short), the shares' draw takes exactly the targets
out of the rows taken and never more of a row than it was taken, and repeats spread evenly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llava_mixes.errors import ConfigError
from llava_mixes.recipes.sampling import draw_counts, share_targets, take_shares

TASKS = ("a", "b", "c", "d", "e")


@st.composite
def shares_and_pools(draw: st.DrawFn) -> tuple[tuple[tuple[str, float], ...], dict[str, int], int | None]:
    tasks = sorted(draw(st.lists(st.sampled_from(TASKS), min_size=1, max_size=5, unique=True)))
    weights = [draw(st.integers(1, 100)) for _ in tasks]
    shares = tuple((task, weight / sum(weights)) for task, weight in zip(tasks, weights, strict=True))
    pool = {task: draw(st.integers(0, 300)) for task in TASKS}
    size = draw(st.one_of(st.none(), st.integers(1, 1500)))
    return shares, pool, size


@given(shares_and_pools())
def test_targets_add_up_to_the_size_within_each_tasks_rows(case: tuple) -> None:
    shares, pool, size = case
    weights = dict(shares)
    try:
        targets = share_targets(shares, pool, size)
    except ConfigError as error:
        short = [task for task in weights if pool[task] == 0]
        if size is not None:
            short += [task for task, weight in weights.items() if math.floor(size * weight + 1e-9) > pool[task]]
        else:
            short += [task for task, weight in weights.items() if pool[task] / weight < 1]
        assert short, str(error)
        assert len(str(error)) < 1000
        return
    assert set(targets) == set(weights)
    total = sum(targets.values())
    if size is not None:
        assert total == size
    else:  # the binding task sizes the mix: the largest total within every task's rows, give or take rounding
        assert abs(total - min(pool[task] / weight for task, weight in weights.items())) <= 1
    roomy = all(pool[task] >= math.ceil(total * weight) + 1 for task, weight in weights.items())
    for task, target in targets.items():
        assert 0 <= target <= pool[task]
        assert abs(target - total * weights[task]) < (1 + 1e-6 if roomy else len(weights))  # largest remainders


@given(
    st.lists(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), max_size=40), min_size=1, max_size=3),
    st.integers(0, 2**63 - 1),
    st.data(),
)
def test_the_shares_draw_takes_exactly_the_targets(sources: list, seed: int, data: st.DataObject) -> None:
    labels = list(TASKS)
    counts = [np.array([times for _, times in rows], dtype=np.int64) for rows in sources]
    codes = [np.array([code for code, _ in rows], dtype=np.int64) for rows in sources]
    pool = {label: 0 for label in labels}
    for each, code in zip(counts, codes, strict=True):
        for times, index in zip(each.tolist(), code.tolist(), strict=True):
            pool[labels[index]] += times
    named = [label for label in labels if pool[label]]
    if not named:
        return
    chosen = data.draw(st.lists(st.sampled_from(named), min_size=1, unique=True))
    targets = {label: data.draw(st.integers(0, pool[label])) for label in chosen}
    taken = take_shares(counts, codes, labels, targets, seed)
    assert [len(each) for each in taken] == [len(each) for each in counts]
    for label in labels:
        got = sum(int(each[code == labels.index(label)].sum()) for each, code in zip(taken, codes, strict=True))
        assert got == targets.get(label, 0)
    assert all((new <= old).all() and (new >= 0).all() for new, old in zip(taken, counts, strict=True))
    again = take_shares(counts, codes, labels, targets, seed)
    assert all((one == two).all() for one, two in zip(taken, again, strict=True))


@given(st.integers(0, 300), st.integers(0, 2000), st.integers(0, 2**63 - 1), st.integers(0, 40))
def test_repeats_spread_evenly(rows: int, wanted: int, seed: int, position: int) -> None:
    if rows == 0:
        assert len(draw_counts(rows, wanted, seed, position)) == 0
        return
    counts = draw_counts(rows, wanted, seed, position)
    assert counts.sum() == wanted and counts.max() - counts.min() <= 1 and counts.min() == wanted // rows


@pytest.mark.parametrize("size", [None, 12])
def test_a_task_with_no_rows_is_named_with_the_tasks_there_are(size: int | None) -> None:
    with pytest.raises(ConfigError, match=r"no sampled row has the task 'ocr'; the sampled rows' tasks: \['vqa'\]"):
        share_targets((("ocr", 0.5), ("vqa", 0.5)), {"vqa": 30, "caption": 0}, size)
