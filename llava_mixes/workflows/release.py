"""Build, analyse and publish in one call: the composition behind `llava-mixes publish`.

The version (and every recipe) is checked before anything is built; each config, and each recipe (published as
the config `recipe-<its name>`), is built (or reused) through the one build entry, `builder.build`; each dedup
config's card views come from the same analysis as `llava-mixes report`; then `publish.publish` writes the
release. The Hub token never appears in an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi

from llava_mixes.building.config import RECIPE_CONFIG, check_config_name
from llava_mixes.building.entry import build
from llava_mixes.building.mixing import check_recipe_kwargs, config_recipe
from llava_mixes.dedup.deduplicate import THRESHOLDS
from llava_mixes.errors import ConfigError
from llava_mixes.publish.card_views import CARD_PAIRS
from llava_mixes.publish.parquet import DEFAULT_MAX_SHARD_SIZE, recipe_config_name
from llava_mixes.publish.publish import PublishResult, check_arguments, open_target, publish
from llava_mixes.report.analysis import CardSummary, card_summary
from llava_mixes.report.write import analyse_built


def release(
    configs: Sequence[str],
    repo_id: str,
    version: str,
    data_dir: str,
    *,
    recipes: Sequence[str] = (),
    local_dir: str | Path | None = None,
    private: bool = False,
    images: str = "bytes",
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    set_default: bool = False,
    cache_dir: str | None = None,
    token: str | None = None,
    api: HfApi | None = None,
    config_kwargs: dict[str, object] | None = None,
    card_views: bool = True,
    commit_message: str | None = None,
    branch: str | None = None,
    create_pr: bool = False,
) -> PublishResult:
    """Build `configs` and `recipes` (recipe YAML files or shipped recipes' names) from `data_dir` and release
    them as `version` of `repo_id` (or of the tree in `local_dir`); a recipe is the config `recipe-<its name>`.
    `config_kwargs` apply to every build, so with `recipes` those a recipe build does not use are refused.

    With `card_views`, the card also shows each dedup config's threshold sweep and a few near-duplicate pairs,
    from the cached embeddings in one pass. The Hub token comes from `token` or, when None, from
    huggingface_hub's usual sources (`HF_TOKEN`, the stored login). `branch` commits to that Hub branch (created
    from `main` when absent); `create_pr` opens a pull request with the release commit instead, untagged (see
    `llava_mixes.publish.publish` for the version rules of both).
    """
    if not configs and not recipes:
        raise ConfigError("name at least one config or recipe to publish")
    for name in configs:
        check_config_name(name)
    check_recipes(recipes, config_kwargs or {})
    check_arguments(repo_id, version, images, max_shard_size)
    if local_dir is not None:
        check_apart(local_dir, data_dir)
    target = open_target(
        repo_id,
        version,
        local_dir=local_dir,
        private=private,
        token=token,
        api=api,
        branch=branch,
        create_pr=create_pr,
    )
    built = [build(name, data_dir, cache_dir, **(config_kwargs or {})) for name in configs]
    built += [build(RECIPE_CONFIG, data_dir, cache_dir, recipe=recipe, **(config_kwargs or {})) for recipe in recipes]
    views: dict[str, CardSummary] = {}
    for config in built:
        if card_views and config.config.is_dedup:
            shown = tuple(sorted({*THRESHOLDS, float(config.config.dedup_threshold or 0.0)}))
            analysed = analyse_built(config, thresholds=shown, pairs_per_band=1, cross_group=False)
            views[config.config.name] = card_summary(analysed.analysis, CARD_PAIRS)
    return publish(
        built,
        target,
        repo_id,
        version,
        images=images,
        max_shard_size=max_shard_size,
        set_default=set_default,
        views=views,
        token=token,
        commit_message=commit_message,
    )


def check_apart(local_dir: str | Path, data_dir: str) -> None:
    """Refuse a `local_dir` that is `data_dir`, holds it or lies inside it: a publish writes and deletes files in
    its folder, which must never reach the sources it reads."""
    local, data = Path(local_dir).resolve(), Path(data_dir).resolve()
    if local == data or data.is_relative_to(local) or local.is_relative_to(data):
        relation = "is" if local == data else "holds" if data.is_relative_to(local) else "lies inside"
        raise ConfigError(
            f"--local-dir {str(local_dir)!r} {relation} the --data-dir {data_dir!r}; a publish writes and deletes "
            "files in its folder, so choose one apart from the data"
        )


def check_recipes(recipes: Sequence[str], config_kwargs: dict[str, object]) -> None:
    """Refuse, before anything is built, a recipe that does not load, a recipe name that cannot be a published
    config name, two recipes of one name (they would be one config), and config kwargs a recipe build would not
    use (`mixing.NOT_FOR_RECIPES`)."""
    if not recipes:
        return
    check_recipe_kwargs(config_kwargs)
    named: dict[str, str] = {}
    for recipe in recipes:
        spec = config_recipe(recipe)
        name = recipe_config_name(spec.name)
        if name in named:
            raise ConfigError(
                f"recipes {named[name]!r} and {recipe!r} are both named {spec.name!r}, so both would be the config "
                f"{name!r}; give one of them another `name:`"
            )
        named[name] = recipe
