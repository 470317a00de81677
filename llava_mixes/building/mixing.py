"""The rows of a recipe (see `recipes.recipe`) from its sources' plain builds: each source sampled, the rows put
together in recipe order, exact duplicate rows removed, benchmark pictures taken out, near-duplicate pictures
removed across the recipe (earlier sources win), with one accounting line per source:
`rows in = kept + removed + contaminated + duplicate rows + rejected + not sampled` (`building.report.RECIPE_COUNTS`).

The builder (`building.build("recipe", data_dir, recipe=...)`) builds the sources and caches the result.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import datasets

from llava_mixes import schema
from llava_mixes.builders import SOURCES, extra_features
from llava_mixes.building.derive import DedupSettings, Embedding, decontaminate_rows, deduplicate_rows
from llava_mixes.building.report import RECIPE_COUNTS, BuildReport, group_stats
from llava_mixes.decontam import CONTAMINATED_SPLIT
from llava_mixes.dedup.rows import DUPLICATE_ROW, duplicate_rows
from llava_mixes.errors import ConfigError
from llava_mixes.progress import quiet
from llava_mixes.recipes.recipe import Recipe, RecipeDedup, load_recipe, shipped_recipes

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


def mix_recipe(
    recipe: Recipe, sources: list[SourceBuild], name: str, version: str, embedding: Embedding
) -> tuple[datasets.DatasetDict, BuildReport]:
    """The splits of `recipe` (`train`, and `duplicate_row`, `contaminated`, `removed` where its steps apply)
    from its sources' builds, in recipe order, and the build report, whose `recipe` holds the per-source counts."""
    configs = tuple(source.config for source in recipe.sources)
    if [source.config for source in sources] != list(configs):
        raise ValueError(f"the builds {[source.config for source in sources]} are not the recipe's sources {configs}")
    features = schema.row_features(extra_features(configs))
    names = {SOURCES[config].name: config for config in configs}
    counts = {config: dict.fromkeys(RECIPE_COUNTS, 0) for config in configs}
    parts = []
    for position, (spec, source) in enumerate(zip(recipe.sources, sources, strict=True)):
        picked = spec.pick(len(source.rows), recipe.seed, position)
        counts[spec.config].update(
            rows_in=source.report.rows_in,
            rejected=source.report.rejected_rows,
            not_sampled=len(source.rows) - len(picked),
        )
        with quiet(len(picked)):
            parts.append(schema.conform(source.rows.select(picked), features))
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
    report.recipe = {"name": recipe.name, "digest": recipe.digest(), "settings": recipe.to_json(), "sources": counts}
    logger.info("recipe %s (%s): %s", recipe.name, recipe.digest()[:12], counts)
    return datasets.DatasetDict({schema.TRAIN_SPLIT: rows, **splits}), report


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
    settings = DedupSettings(dedup.threshold, scope, dedup.embedder, verify_copies=True)
    done = deduplicate_rows(rows, settings, embedding, count_out)
    report.dedup, report.embedding = done.dedup, done.embedding
    for config, number in _count(done.splits[schema.REMOVED_SPLIT], names).items():
        counts[config]["removed"] = number
    return done.splits[schema.TRAIN_SPLIT], done.splits[schema.REMOVED_SPLIT]


def recipe_base(dataset: datasets.DatasetDict) -> datasets.Dataset:
    """The rows a recipe build's dedup started from: its `train` and `removed` rows."""
    parts = [dataset[split] for split in (schema.TRAIN_SPLIT, schema.REMOVED_SPLIT) if split in dataset]
    return datasets.concatenate_datasets(parts)
