"""How a recipe samples its sources: how many times each row is taken (not at all, once, or repeated), the caps,
and the shares by task across sources, every draw seeded by the recipe's `seed`.

- `sample:` a count (an integer) is that many rows; a float is a multiple of the source's rows: in (0, 1) a
  fraction (0.5: half), 1.0 all, above 1 a factor (2.0: twice, 1.5: one and a half times), rounded to a whole
  number of rows, at least one of a source that has any. Above a source's size, every row is taken
  `wanted // rows` times and `wanted % rows` rows, drawn without replacement, once more (deterministic repetition).
  An integer `2` is two rows, a float `2.0` twice the source: YAML tells them apart by the dot.
- `cap:` at most that many rows of the source (repeats included), drawn at random when the sample asks more; a
  source's own `cap` replaces the recipe's `cap` for it (so one source can be let above the recipe's cap).
- `shares:` the mix's rows by the rows' `task` column, after each source's sample and cap: each named task's rows
  are drawn from the sampled rows (repeats included) without replacement; rows of a task not named leave as
  not sampled. Shares lie in (0, 1] and sum to 1 within `SHARE_TOLERANCE` (then divided by their sum). The task
  names are the ones the sources' rows hold (the builders write `conversation`, `detail_description`,
  `complex_reasoning`, `vqa`, `multiple_choice`, `referring`, `region_caption`, `referring_qa`, `caption`,
  `ocr_caption`, `text`, and a source's own labels, such as zh600k's), so they are checked against the rows when the
  mix is built: a task no sampled row holds is refused with the tasks there are. Rows without a task count as
  `(no task)` (`NO_TASK`), which shares may name.
- `size:` (with `shares`) the mix's rows before duplicate rows, benchmark pictures and near duplicates leave; without
  it the binding task sizes the mix (the largest size no task runs short of). A task that cannot meet its share
  fails loudly: the sampling never repeats rows the recipe did not ask to repeat (raise the source's `sample:` to
  upsample it).

The mix is bounded: a recipe asking more than `MAX_MIX_ROWS` rows in all is refused before any memory is taken; the
memory a mix takes grows with its rows. A key given as null is read as left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from llava_mixes.errors import ConfigError
from llava_mixes.recipes.yaml_reader import show

MAX_FACTOR = 1000.0
"""The largest `sample:` factor (a float): a source taken a thousand times over."""
MAX_MIX_ROWS = 100_000_000
"""The most rows a recipe may ask for in all (repeats included); FineVision, the largest public mix, is 24M."""
SHARE_TOLERANCE = 1e-3
"""How far the shares' sum may lie from 1; they are then divided by their sum."""
MAX_TASKS = 1000
MAX_TASK_NAME = 200
REPEAT_MARK = "#r"
"""A repeated row's id is its row's id, this mark and its copy number (`mix665k-0000012#r1`); a built row's id
(`<source>-<row index>`) never holds it."""
NO_TASK = "(no task)"
"""The record's line for rows without a task."""
SHARES_STREAM = 0x5348415245
"""Set apart the shares' draws (`[seed, task index, SHARES_STREAM]`) from the sources' (`[seed, position]`)."""


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_sample(sample: object, where: str) -> str | int | float:
    """`sample` when it is `all`, a count in [1, MAX_MIX_ROWS] or a float in (0, MAX_FACTOR]; else `ConfigError`."""
    allowed = f"give 'all', a row count in [1, {MAX_MIX_ROWS:,}] or a float in (0, {MAX_FACTOR:g}]"
    if isinstance(sample, str) and sample == "all":
        return sample
    if not _number(sample):
        raise ConfigError(f"{where}={show(sample)} is not allowed; {allowed}")
    if isinstance(sample, int) and not 1 <= sample <= MAX_MIX_ROWS:
        raise ConfigError(f"{where}={show(sample)} is not allowed; a count must be >= 1 and at most {MAX_MIX_ROWS:,}")
    if isinstance(sample, float) and not 0.0 < sample <= MAX_FACTOR:
        raise ConfigError(
            f"{where}={show(sample)} is not allowed; a fraction must lie in (0, 1], a factor in (1, {MAX_FACTOR:g}]"
        )
    return sample


def check_cap(cap: object, where: str) -> int | None:
    """`cap` when it is None or a count in [1, MAX_MIX_ROWS]; else `ConfigError`."""
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_MIX_ROWS:
        raise ConfigError(
            f"{where}={show(cap)} is not allowed; give a row count in [1, {MAX_MIX_ROWS:,}] (leave it out for no cap)"
        )
    return cap


def check_shares(shares: object) -> tuple[tuple[str, float], ...] | None:
    """`shares` as (task, share) pairs sorted by task, each share in (0, 1] and their sum 1 within
    `SHARE_TOLERANCE`; `ConfigError` naming the bad value."""
    if shares is None:
        return None
    pairs = list(shares.items()) if isinstance(shares, Mapping) else shares
    if not isinstance(pairs, (list, tuple)) or not 0 < len(pairs) <= MAX_TASKS:
        raise ConfigError(
            f"shares={show(shares)} is not allowed; give a mapping of 1-{MAX_TASKS} tasks to shares, e.g. "
            "{conversation: 0.4, vqa: 0.3, caption: 0.3}"
        )
    checked: dict[str, float] = {}
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"shares: {show(pair)} is not allowed; give task: share pairs")
        task, share = pair
        if not isinstance(task, str) or not task.strip() or len(task) > MAX_TASK_NAME or "\0" in task:
            raise ConfigError(
                f"shares: the task {show(task)} is not allowed; give a task name (the rows' `task` column), "
                f"1-{MAX_TASK_NAME} characters"
            )
        if task in checked:
            raise ConfigError(f"shares: the task {show(task)} twice; name each task once")
        if not _number(share) or not 0.0 < share <= 1.0:
            raise ConfigError(
                f"shares.{show(task)}={show(share)} is not allowed; a share lies in (0, 1] (leave a task out to "
                "take none of its rows)"
            )
        checked[task] = float(share)
    total = math.fsum(checked.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ConfigError(
            f"shares={show(dict(checked))} sum to {total:.6g}, not 1; make them sum to 1 (within {SHARE_TOLERANCE:g})"
        )
    return tuple(sorted(checked.items()))


def check_size(size: object, shares: object) -> int | None:
    """`size` when it is None or a count in [1, MAX_MIX_ROWS] given with `shares`; else `ConfigError`."""
    if size is None:
        return None
    if shares is None:
        raise ConfigError(f"size={show(size)} is not allowed without shares; give shares: {{task: share, ...}}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_MIX_ROWS:
        raise ConfigError(
            f"size={show(size)} is not allowed; give a row count in [1, {MAX_MIX_ROWS:,}], or leave it out to size "
            "the mix by its binding task"
        )
    return size


def wanted_rows(sample: str | int | float, rows: int, cap: int | None) -> int:
    """How many rows `sample` asks of a source of `rows` rows, within `cap` (repeats included)."""
    if rows == 0:
        return 0
    if sample == "all":
        wanted = rows
    elif isinstance(sample, int):
        wanted = sample
    else:
        wanted = max(1, round(sample * rows))
    return wanted if cap is None else min(wanted, cap)


def draw_counts(rows: int, wanted: int, seed: int, position: int) -> np.ndarray:
    """How many times each of `rows` rows is taken so that `wanted` are taken in all: every row `wanted // rows`
    times, and `wanted % rows` rows, drawn without replacement by `[seed, position]`, once more."""
    if rows == 0:
        return np.zeros(0, dtype=np.int64)
    full, extra = divmod(wanted, rows)
    counts = np.full(rows, full, dtype=np.int64)
    if extra:
        chosen = np.random.default_rng([seed, position]).choice(rows, size=extra, replace=False)
        counts[chosen] += 1
    return counts


def share_targets(shares: Sequence[tuple[str, float]], pool: Mapping[str, int], size: int | None) -> dict[str, int]:
    """The rows each task of `shares` takes, from the sampled rows per task `pool`: `size` split by the shares
    (largest remainders), or, without `size`, the largest total no task runs short of; `ConfigError` when a task
    has too few rows, naming it, its rows and the tasks there are."""
    total = math.fsum(share for _, share in shares)
    weights = {task: share / total for task, share in shares}
    present = sorted(task for task, rows in pool.items() if rows)
    for task in weights:
        if not pool.get(task):
            raise ConfigError(
                f"shares: no sampled row has the task {show(task)}; the sampled rows' tasks: {show(present)}"
                if present
                else f"shares: no sampled row has the task {show(task)}; the sampled rows have no task at all"
            )
    binding = None
    if size is None:
        binding = min(weights, key=lambda task: (pool[task] / weights[task], task))
        size = math.floor(pool[binding] / weights[binding] * (1 + 1e-12))
        if size == 0:
            raise ConfigError(f"shares: the task {show(binding)} has too few rows to size the mix; give size:")
    raw = {task: size * weight for task, weight in weights.items()}
    targets = {task: math.floor(value + 1e-9) for task, value in raw.items()}
    for task, target in targets.items():
        if target > pool[task]:
            raise ConfigError(
                f"shares: the task {show(task)} (share {weights[task]:.6g} of size={size:,}) needs {target:,} rows, "
                f"but the sampled rows hold {pool[task]:,} of it; raise the sample of a source that has it (a factor "
                "such as 2.0 repeats its rows), lower size, or leave size out to size the mix by its binding task"
            )
    order = sorted(weights, key=lambda task: (-(raw[task] - math.floor(raw[task])), task))
    rest = size - sum(targets.values())
    for limit in (1, None):
        for task in order:
            room = pool[task] - targets[task]
            add = min(rest, room if limit is None else min(room, limit))
            targets[task] += add
            rest -= add
    if rest:
        raise ConfigError(f"shares: the sampled rows of the named tasks hold fewer than size={size:,} rows")
    return targets


def take_shares(
    counts: list[np.ndarray],
    codes: list[np.ndarray],
    labels: Sequence[str],
    targets: Mapping[str, int],
    seed: int,
) -> list[np.ndarray]:
    """Each source's counts after the shares: for each task of `targets` (in name order), its target drawn without
    replacement from the sampled rows of that task (each repeat one draw), by `[seed, task index, SHARES_STREAM]`;
    the rows of other tasks none. `codes[s][row]` is the index in `labels` of the task of source `s`'s row."""
    taken = [np.zeros_like(each) for each in counts]
    sizes = [len(each) for each in counts]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    every_count = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    every_code = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    flat = np.zeros(len(every_count), dtype=np.int64)
    for index, task in enumerate(sorted(targets)):
        code = list(labels).index(task)
        rows = np.flatnonzero((every_code == code) & (every_count > 0))
        units = np.repeat(rows, every_count[rows])
        target = targets[task]
        if target < len(units):
            rng = np.random.default_rng([seed, index, SHARES_STREAM])
            units = units[rng.choice(len(units), size=target, replace=False)]
        flat += np.bincount(units, minlength=len(flat)).astype(np.int64)
    for source in range(len(counts)):
        taken[source] = flat[offsets[source] : offsets[source + 1]]
    return taken
