"""Build a recipe (see `mixes.recipe`): each source's plain config built (or reused) and sampled, the rows put
together in recipe order, exact duplicate rows removed, benchmark pictures taken out, near-duplicate pictures
removed across the recipe (earlier sources win), with one accounting line per source:
`rows in = kept + removed + contaminated + duplicate rows + rejected + not sampled`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from llava_mixes import schema
from llava_mixes.builder import build
from llava_mixes.builders import SOURCES, extra_features
from llava_mixes.decontam import CONTAMINATED_SPLIT, find_contamination, split_contaminated
from llava_mixes.dedup.deduplicate import deduplicate
from llava_mixes.dedup.rows import DUPLICATE_ROW, duplicate_rows
from llava_mixes.devices import parse_devices
from llava_mixes.embedding.embedders import resolve_embedder
from llava_mixes.embedding.transform import fill_cache
from llava_mixes.mixes.recipe import Recipe, load_recipe
from llava_mixes.store import default_cache_root

logger = logging.getLogger(__name__)

DUPLICATE_SPLIT = DUPLICATE_ROW
"""The split of exact duplicate rows, each with `duplicate_of`: the id of the row kept."""
COUNTS = ("rows_in", "rejected", "not_sampled", "duplicate_rows", "contaminated", "not_embedded", "removed", "kept")


@dataclass(frozen=True)
class RecipeBuilt:
    """A built recipe: the recipe, its splits and per source (by config name) the counts of `COUNTS`."""

    recipe: Recipe
    dataset: datasets.DatasetDict
    sources: dict[str, dict[str, int]]
    decontamination: dict[str, Any] | None

    def accounted(self) -> bool:
        """Whether every source's rows in equal the sum of where they went."""
        return all(c["rows_in"] == sum(c[key] for key in COUNTS[1:]) for c in self.sources.values())


def _count(rows: datasets.Dataset, names: dict[str, str]) -> Counter[str]:
    return Counter(names[value] for value in rows[schema.SOURCE]) if len(rows) else Counter()


def build_recipe(
    recipe: str | Path | Recipe,
    data_dir: str,
    cache_dir: str | None = None,
    *,
    content_cache_dir: str | None = None,
    device: str | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
) -> RecipeBuilt:
    """Build `recipe` (a YAML path, a shipped recipe's name or a `Recipe`) from `data_dir` (module docstring)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, tuple(SOURCES))
    root = Path(content_cache_dir) if content_cache_dir else default_cache_root()
    kwargs = {"content_cache_dir": content_cache_dir} if content_cache_dir else {}
    configs = tuple(source.config for source in recipe.sources)
    features = schema.row_features(extra_features(configs))
    names = {SOURCES[config].name: config for config in configs}
    counts = {config: dict.fromkeys(COUNTS, 0) for config in configs}
    parts = []
    for position, source in enumerate(recipe.sources):
        built = build(source.config, data_dir, cache_dir, **kwargs)
        rows = built.dataset[schema.TRAIN_SPLIT]
        picked = source.pick(len(rows), recipe.seed, position)
        counts[source.config].update(
            rows_in=built.report.rows_in, rejected=built.report.rejected_rows, not_sampled=len(rows) - len(picked)
        )
        parts.append(schema.conform(rows.select(picked), features))
    rows = datasets.concatenate_datasets(parts)
    splits: dict[str, datasets.Dataset] = {}

    if recipe.duplicate_rows == "remove":
        copies = duplicate_rows(rows)
        ids = rows[schema.ID]
        copy_rows = sorted(copies)
        duplicates = rows.select(copy_rows).add_column(schema.DUPLICATE_OF, [ids[copies[row]] for row in copy_rows])
        rows = rows.select(sorted(set(range(len(rows))) - copies.keys()))
        splits[DUPLICATE_SPLIT] = duplicates
        for config, number in _count(duplicates, names).items():
            counts[config]["duplicate_rows"] = number

    decontamination = None
    if recipe.decontaminate is not None:
        spec = recipe.decontaminate
        found = find_contamination(
            rows,
            list(spec.references),
            spec.threshold,
            spec.embedder,
            cache_dir=root,
            device=device,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        parted = split_contaminated(rows, found)
        rows, splits[CONTAMINATED_SPLIT] = parted[schema.TRAIN_SPLIT], parted[CONTAMINATED_SPLIT]
        decontamination = found.to_json()
        for config, number in _count(splits[CONTAMINATED_SPLIT], names).items():
            counts[config]["contaminated"] = number

    if recipe.dedup is not None:
        devices = parse_devices(device)
        model = resolve_embedder(recipe.dedup.embedder, device=devices[0])
        cache, stats = fill_cache(rows, model, root, batch_size, num_workers, devices, keep_failures=True)
        if stats.failed:
            failed = rows.filter(lambda sha: sha in stats.failed, input_columns=[schema.IMAGE_SHA256])
            rows = rows.filter(lambda sha: sha not in stats.failed, input_columns=[schema.IMAGE_SHA256])
            for config, number in _count(failed, names).items():
                counts[config]["not_embedded"] = number
        scope = "global" if recipe.dedup.scope == "recipe" else "group"
        result = deduplicate(rows, recipe.dedup.threshold, scope, embeddings=cache)
        rows, splits[schema.REMOVED_SPLIT] = result[schema.TRAIN_SPLIT], result[schema.REMOVED_SPLIT]
        for config, number in _count(splits[schema.REMOVED_SPLIT], names).items():
            counts[config]["removed"] = number
    for config, number in _count(rows, names).items():
        counts[config]["kept"] = number
    logger.info("recipe %s (%s): %s", recipe.name, recipe.digest()[:12], counts)
    return RecipeBuilt(recipe, datasets.DatasetDict({schema.TRAIN_SPLIT: rows, **splits}), counts, decontamination)


def format_recipe_table(built: RecipeBuilt) -> str:
    """One line per source with the counts of `COUNTS`, then the total."""
    width = max(len(config) for config in [*built.sources, "total"])
    heads = [key.replace("_", " ") for key in COUNTS]
    lines = [f"{'source':{width}s}  " + "  ".join(f"{head:>12s}" for head in heads)]
    total = dict.fromkeys(COUNTS, 0)
    for config, counts in built.sources.items():
        lines.append(f"{config:{width}s}  " + "  ".join(f"{counts[key]:12,d}" for key in COUNTS))
        for key in COUNTS:
            total[key] += counts[key]
    lines.append(f"{'total':{width}s}  " + "  ".join(f"{total[key]:12,d}" for key in COUNTS))
    return "\n".join(lines)
