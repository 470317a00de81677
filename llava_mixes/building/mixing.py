"""The rows of a recipe (see `recipes.recipe`) from its sources' plain builds: each source sampled (`sample`, `cap`,
then `shares` by task: `recipes.sampling`), the rows taken put together in recipe order, exact duplicate rows removed,
benchmark pictures taken out, near-duplicate pictures removed across the recipe (earlier sources win), and last each
kept row repeated as many times as it was taken, with one accounting line per source:
`rows in = kept + removed + contaminated + duplicate rows + not embedded + rejected + not sampled`
(`building.report.RECIPE_COUNTS`), and `train` holds `kept + repeats` rows of it.

Deliberate repeats: the steps see each row taken once, so a repeat is never a duplicate row or a near duplicate of
its own row, and nothing is counted twice; a row that leaves (a duplicate row, a benchmark picture, a near duplicate)
takes its repeats with it, and the record shows the requested rows next to the rows in `train`. The repeats are in
`train` only, after the kept rows (each source's first copies, then its second, ...), each with its own id
(`<id>#r<copy>`, `sampling.REPEAT_MARK`) and its row's `source_id`: export writes them as rows of their own (LLaVA's
`id` is the `source_id`, so a repeat has its row's; the picture is written once), publish as rows of the shards.
The dedup report and the group table count each row once; the recipe's base rows (`recipe_base`, what a report
analyses) leave the repeats out.

The builder (`building.build("recipe", data_dir, recipe=...)`) builds the sources and caches the result.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llava_mixes import schema
from llava_mixes.builders import SOURCES, extra_features
from llava_mixes.building.derive import DedupSettings, Embedding, decontaminate_rows, deduplicate_rows
from llava_mixes.building.report import RECIPE_COUNTS, BuildReport, group_stats, recipe_tasks
from llava_mixes.decontam import CONTAMINATED_SPLIT
from llava_mixes.decontam.copies import RECIPE_THRESHOLD
from llava_mixes.dedup.rows import DUPLICATE_ROW, duplicate_rows
from llava_mixes.errors import ConfigError
from llava_mixes.progress import quiet
from llava_mixes.recipes.recipe import Recipe, RecipeDedup, load_recipe, shipped_recipes
from llava_mixes.recipes.sampling import (
    MAX_MIX_ROWS,
    NO_TASK,
    REPEAT_MARK,
    share_targets,
    take_shares,
)

logger = logging.getLogger(__name__)

DUPLICATE_SPLIT = DUPLICATE_ROW
"""The split of exact duplicate rows, each with `duplicate_of`: the id of the row kept."""


@dataclass(frozen=True)
class SourceBuild:
    """One recipe source's plain build: its config name, its `train` rows and its report."""

    config: str
    rows: datasets.Dataset
    report: BuildReport


NOT_FOR_RECIPES: dict[str, str | None] = {
    "dedup_threshold": "dedup.threshold",
    "dedup_scope": "dedup.scope",
    "dedup_search": None,
    "embedder": "dedup.embedder",
    "embedder_revision": None,
    "precision": None,
    "engine": None,
    "keep_embeddings": None,
    "decontaminate": "decontaminate.references",
    "decontaminate_threshold": "decontaminate.threshold",
    "decontaminate_embedder": "decontaminate.embedder",
    "data_files": "sources[].data_files",
}
"""The config fields a recipe build does not take, each with the recipe key that sets it instead (None: the
recipe has no such setting, and a recipe build always uses that field's default)."""


def recipe_remedy(name: str) -> str:
    """What to do instead of setting the config field `name` (one of `NOT_FOR_RECIPES`) for the config `recipe`."""
    key = NOT_FOR_RECIPES[name]
    if name == "data_files":
        return (
            "name each source's files instead: `data_files: FILE` on its entry in the recipe, or "
            "data_files={CONFIG: FILE} (`--data-files CONFIG=FILE` on the command line), relative to data_dir"
        )
    if key:
        return f"set {key} in the recipe"
    return "a recipe build does not use it, and the recipe has no such setting"


def recipe_refusal(name: str, value: object) -> str:
    """Why the config field `name` (one of `NOT_FOR_RECIPES`) cannot be `value` for the config `recipe`."""
    how = recipe_remedy(name)
    return f"{name}={value!r} is not allowed for config 'recipe': {how} (see llava_mixes/recipes/recipe.py)"


def check_recipe_kwargs(kwargs: dict[str, object]) -> None:
    """Refuse config kwargs that a recipe build would not use (`NOT_FOR_RECIPES`), naming the first one given and
    the recipe key that sets it instead."""
    for name, value in kwargs.items():
        unset = value is None or value is False or (isinstance(value, (list, tuple)) and not value)
        if name in NOT_FOR_RECIPES and not unset:
            raise ConfigError(recipe_refusal(name, value))


def config_recipe(recipe: str | None, refused: dict[str, object] | None = None) -> Recipe:
    """The recipe of the builder's config `recipe` (a YAML file or a shipped recipe's name), loaded and validated;
    `refused` are config fields (of `NOT_FOR_RECIPES`) given for it, which must be unset."""
    check_recipe_kwargs(refused or {})
    if recipe is None:
        raise ConfigError(
            "config 'recipe' needs recipe=: a recipe YAML file or a shipped recipe's name, one of "
            f"{list(shipped_recipes())}"
        )
    return load_recipe(str(recipe), tuple(SOURCES))


def _count(rows: datasets.Dataset, names: dict[str, str]) -> Counter[str]:
    return Counter(names[value] for value in rows[schema.SOURCE]) if len(rows) else Counter()


@dataclass(frozen=True)
class Sampling:
    """How many times a recipe takes each row of each source (`counts`), and the task labels of the rows (`labels`,
    and each source's rows' indices into them, `codes`)."""

    counts: list[np.ndarray]
    labels: list[str]
    codes: list[np.ndarray]


def _task_codes(sources: list[SourceBuild]) -> tuple[list[str], list[np.ndarray]]:
    """The task labels of the sources' rows (`NO_TASK` for a row without one), and each row's index into them."""
    columns = [source.rows.with_format("arrow")[schema.TASK] for source in sources]
    named = sorted({value for column in columns for value in pc.unique(column).to_pylist() if value is not None})
    labels = [*named, NO_TASK] if NO_TASK not in named else named
    value_set = pa.array(named, pa.string())
    codes = [
        pc.fill_null(pc.index_in(column, value_set=value_set), labels.index(NO_TASK)).to_numpy().astype(np.int64)
        for column in columns
    ]
    return labels, codes


def sample_sources(recipe: Recipe, sources: list[SourceBuild]) -> Sampling:
    """How many times `recipe` takes each row of its sources (`sample` within `cap`, then `shares`); `ConfigError`
    before any draw when it asks more than `MAX_MIX_ROWS` rows, or a share cannot be met."""
    wanted = [spec.wanted(len(source.rows), recipe.cap) for spec, source in zip(recipe.sources, sources, strict=True)]
    if sum(wanted) > MAX_MIX_ROWS:
        asks = ", ".join(f"{spec.config}: {ask:,}" for spec, ask in zip(recipe.sources, wanted, strict=True))
        raise ConfigError(
            f"recipe {recipe.name!r} asks {sum(wanted):,} rows ({asks}), more than the {MAX_MIX_ROWS:,} a recipe may "
            "take; lower a source's sample or give cap:"
        )
    counts = [
        spec.counts(len(source.rows), recipe.seed, position, recipe.cap)
        for position, (spec, source) in enumerate(zip(recipe.sources, sources, strict=True))
    ]
    labels, codes = _task_codes(sources)
    if recipe.shares is not None:
        targets = share_targets(recipe.shares, _per_task(counts, codes, labels), recipe.size)
        counts = take_shares(counts, codes, labels, targets, recipe.seed)
    return Sampling(counts, labels, codes)


def _per_task(counts: list[np.ndarray], codes: list[np.ndarray], labels: list[str]) -> dict[str, int]:
    """The rows taken per task label, repeats included."""
    total = np.zeros(len(labels), dtype=np.int64)
    for each, code in zip(counts, codes, strict=True):
        total += np.bincount(code, weights=each, minlength=len(labels)).astype(np.int64)
    return {label: int(number) for label, number in zip(labels, total.tolist(), strict=True) if number}


def mix_recipe(
    recipe: Recipe, sources: list[SourceBuild], name: str, version: str, embedding: Embedding
) -> tuple[datasets.DatasetDict, BuildReport]:
    """The splits of `recipe` (`train`, and `duplicate_row`, `contaminated`, `removed` where its steps apply)
    from its sources' builds, in recipe order, and the build report, whose `recipe` holds the per-source counts
    and the per-task ones, each next to the requested."""
    configs = tuple(source.config for source in recipe.sources)
    if [source.config for source in sources] != list(configs):
        raise ValueError(f"the builds {[source.config for source in sources]} are not the recipe's sources {configs}")
    features = schema.row_features(extra_features(configs))
    names = {SOURCES[config].name: config for config in configs}
    counts = {config: dict.fromkeys(RECIPE_COUNTS, 0) for config in configs}
    sampling = sample_sources(recipe, sources)
    parts = []
    for spec, source, taken in zip(recipe.sources, sources, sampling.counts, strict=True):
        picked = np.flatnonzero(taken)
        counts[spec.config].update(
            rows_in=source.report.rows_in,
            rejected=source.report.rejected_rows,
            not_sampled=len(source.rows) - len(picked),
            requested=int(taken.sum()),
        )
        with quiet(len(picked)):
            parts.append(schema.conform(schema.select_rows(source.rows, picked), features))
    rows = datasets.concatenate_datasets(parts)
    splits: dict[str, datasets.Dataset] = {}
    report = BuildReport(
        config_name=name,
        version=version,
        sources=list(configs),
        rows_in=sum(source.report.rows_in for source in sources),
        rejected=[rejection for source in sources for rejection in source.report.rejected],
    )

    copies = duplicate_rows(rows)
    report.duplicate_rows = len(copies)
    if recipe.duplicate_rows == "remove":
        ids = rows[schema.ID]
        copy_rows = sorted(copies)
        with quiet(len(copy_rows)):
            duplicates = schema.select_rows(rows, copy_rows).add_column(
                schema.DUPLICATE_OF,
                [ids[copies[row]] for row in copy_rows],
                feature=schema.DEDUP_FEATURES[schema.DUPLICATE_OF],
            )
        rows = rows.select(sorted(set(range(len(rows))) - copies.keys()))
        splits[DUPLICATE_SPLIT] = duplicates
        for config, number in _count(duplicates, names).items():
            counts[config]["duplicate_rows"] = number

    if recipe.decontaminate is not None:
        spec = recipe.decontaminate
        rows, splits[CONTAMINATED_SPLIT], report.decontamination = decontaminate_rows(
            rows, list(spec.references), spec.threshold, spec.embedder, embedding
        )
        for config, number in _count(splits[CONTAMINATED_SPLIT], names).items():
            counts[config]["contaminated"] = number

    removed = rows.select([])
    if recipe.dedup is not None:
        rows, removed = _deduplicated(recipe.dedup, rows, embedding, names, counts, report)
        splits[schema.REMOVED_SPLIT] = removed
    for config, number in _count(rows, names).items():
        counts[config]["kept"] = number
    report.groups = group_stats(rows, removed, report.rejected)
    rows, in_train = _with_repeats(rows, sources, sampling, features, counts)
    requested = _per_task(sampling.counts, sampling.codes, sampling.labels)
    report.recipe = {
        "name": recipe.name,
        "digest": recipe.digest(),
        "settings": recipe.to_json(),
        "sources": counts,
        "tasks": recipe_tasks(dict(recipe.shares or ()), requested, in_train),
    }
    logger.info("recipe %s (%s): %s", recipe.name, recipe.digest()[:12], counts)
    return datasets.DatasetDict({schema.TRAIN_SPLIT: rows, **splits}), report


def _with_repeats(
    kept: datasets.Dataset,
    sources: list[SourceBuild],
    sampling: Sampling,
    features: datasets.Features,
    counts: dict[str, dict[str, int]],
) -> tuple[datasets.Dataset, dict[str, int]]:
    """The `train` rows: the `kept` rows, then, for each source, each kept row's repeats (`Sampling.counts`), copy
    by copy, each with the id `<id>#r<copy>`; and the rows in `train` per task. Sets each source's `repeats`.

    A copy's rows are an ascending selection of the source's plain rows with the id column swapped (a column in
    memory), so nothing is gathered row by row or written here: the builder writes `train` in stored batches."""
    kept_ids = kept.with_format("arrow")[schema.ID].combine_chunks()
    in_train = np.zeros(len(sampling.labels), dtype=np.int64)
    parts = [kept]
    for source, taken, codes in zip(sources, sampling.counts, sampling.codes, strict=True):
        ids = source.rows.with_format("arrow")[schema.ID].combine_chunks()
        times = np.where(pc.is_in(ids, value_set=kept_ids).to_numpy(zero_copy_only=False), taken, 0)
        in_train += np.bincount(codes, weights=times, minlength=len(in_train)).astype(np.int64)
        counts[source.config]["repeats"] = int(times.sum() - np.count_nonzero(times))
        base = None
        for copy in range(1, int(times.max(initial=0))):
            if base is None:
                base = _typed(source.rows, features).remove_columns([schema.ID])
            layer = pa.array(times > copy)
            marked = pc.binary_join_element_wise(ids, pa.scalar(REPEAT_MARK), pa.scalar(str(copy)), "")
            column = pc.if_else(layer, marked, pa.nulls(len(ids), pa.string()))
            copied = base.add_column(schema.ID, column, feature=features[schema.ID]).select_columns(list(features))
            parts.append(copied.select(np.flatnonzero(times > copy)))
    train = datasets.concatenate_datasets(parts) if len(parts) > 1 else kept
    tasks = {label: int(number) for label, number in zip(sampling.labels, in_train.tolist(), strict=True) if number}
    return train, tasks


def _typed(rows: datasets.Dataset, features: datasets.Features) -> datasets.Dataset:
    """`rows` with every column of `features`, the absent ones as typed nulls (no cast, so nothing is rewritten)."""
    for name, feature in features.items():
        if name not in rows.column_names:
            arrow_type = datasets.Features({name: feature}).arrow_schema.field(name).type
            rows = rows.add_column(name, pa.nulls(len(rows), arrow_type), feature=feature)
    rows = rows.select_columns(list(features))
    return rows if rows.features == features else rows.cast(features)


def _deduplicated(
    dedup: RecipeDedup,
    rows: datasets.Dataset,
    embedding: Embedding,
    names: dict[str, str],
    counts: dict[str, dict[str, int]],
    report: BuildReport,
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """`rows` split into kept and removed by `dedup` (`derive.deduplicate_rows`, a copy embedder's pairs confirmed by
    verification); rows whose picture has no vector are counted as `not_embedded` and left out of both."""

    def count_out(rows: datasets.Dataset, failed: Mapping[str, str]) -> datasets.Dataset:
        if not failed:
            return rows
        gone = rows.filter(lambda sha: sha in failed, input_columns=[schema.IMAGE_SHA256])
        for config, number in _count(gone, names).items():
            counts[config]["not_embedded"] = number
        return rows.filter(lambda sha: sha not in failed, input_columns=[schema.IMAGE_SHA256])

    scope = "global" if dedup.scope == "recipe" else "group"
    settings = DedupSettings(dedup.threshold, scope, dedup.embedder, threshold_setting=RECIPE_THRESHOLD)
    done = deduplicate_rows(rows, settings, embedding, count_out)
    report.dedup, report.embedding = done.dedup, done.embedding
    for config, number in _count(done.splits[schema.REMOVED_SPLIT], names).items():
        counts[config]["removed"] = number
    return done.splits[schema.TRAIN_SPLIT], done.splits[schema.REMOVED_SPLIT]


def recipe_base(dataset: datasets.DatasetDict) -> datasets.Dataset:
    """The rows a recipe build's dedup started from: its `train` rows but the repeats, and its `removed` rows."""
    parts = [dataset[split] for split in (schema.TRAIN_SPLIT, schema.REMOVED_SPLIT) if split in dataset]
    train = parts[0] if parts and schema.TRAIN_SPLIT in dataset else None
    if train is not None and len(train):
        ids = train.with_format("arrow")[schema.ID].combine_chunks()
        repeat = pc.match_substring(ids, REPEAT_MARK).to_numpy(zero_copy_only=False)
        if repeat.any():
            parts[0] = train.select(np.flatnonzero(~repeat))
    return datasets.concatenate_datasets(parts)
