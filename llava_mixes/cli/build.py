"""`llava-mixes list`, `build` and `demo` (the configs, one build with its statistics, the offline playground),
and how every command prints (`out`); the build flags are in `cli.options`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from llava_mixes.builders import SOURCES
from llava_mixes.building.builder import LlavaMixes
from llava_mixes.building.config import RECIPE_CONFIG
from llava_mixes.building.entry import build
from llava_mixes.building.report import BuildReport, alarm_line, removal_alarms, stats_file_name
from llava_mixes.building.tables import format_recipe_table, format_table, format_task_table
from llava_mixes.cli.options import (
    add_build_options,
    add_recipe_option,
    check_flags_apply,
    check_recipe_flags,
    config_kwargs,
)
from llava_mixes.decontam import format_benchmark_table
from llava_mixes.decontam.benchmark_sets import shipped_sets
from llava_mixes.embedding.embedders import EMBEDDER_GUIDE
from llava_mixes.errors import ConfigError
from llava_mixes.playground import write_playground
from llava_mixes.playground.eval import write_eval_playground
from llava_mixes.recipes.recipe import load_recipe

DEMO_DEDUP_CONFIGS = ("mix665k-dedup-0.8", "mix665k+zh600k-dedup-0.8")


def out(text: str) -> None:
    """Print one line of a command's output."""
    sys.stdout.write(text + "\n")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every named config with its sources and dedup threshold, or (`--embedders`) every embedder, or
    (`--benchmarks`) every named benchmark set with its entries."""
    if args.benchmarks:
        for named in shipped_sets().values():
            out(f"{named.name} ({len(named.entries)} benchmarks): {named.description}")
            for entry in named.entries:
                confirmed = "" if entry.confirmed else "  (layout not confirmed)"
                out(f"  {named.name}/{entry.name:34s} {entry.repo_config:46s} {', '.join(entry.splits)}{confirmed}")
        return 0
    if args.embedders:
        out(f"{'embedder':36s} {'copy':28s} {'near duplicate':24s} what")
        for name, what, copy, near in EMBEDDER_GUIDE:
            out(f"{name:36s} {copy:28s} {near:24s} {what}")
        return 0
    families: dict[str, list[str]] = {}
    for config in LlavaMixes.BUILDER_CONFIGS:
        if config.is_recipe:
            out(f"{config.name:28s} v{config.version}  a recipe: --recipe FILE or a shipped recipe's name")
            continue
        family = SOURCES[config.sources[0]].family if len(config.sources) == 1 else None
        if family is not None:
            if not config.is_dedup:
                families.setdefault(family, []).append(config.name)
            continue
        sources = ", ".join(SOURCES[name].name for name in config.sources)
        dedup = f"dedup at cosine >= {config.dedup_threshold}, per group" if config.is_dedup else "not deduplicated"
        out(f"{config.name:28s} v{config.version}  {dedup:34s} {sources}")
    for family, names in families.items():
        out(f"{family}'s subsets, one config each (also <name>-dedup-0.7/0.8/0.9): {', '.join(names)}")
    return 0


def print_report(report: BuildReport) -> None:
    """Print a build's statistics table, its rejections by reason and its cache repairs."""
    out(f"\n{report.config_name} (v{report.version}): {report.rows_in:,} rows in")
    if report.recipe:
        out(f"recipe {report.recipe['name']} ({report.recipe['digest'][:12]}), rows per source:")
        out(format_recipe_table(report))
        if format_task_table(report):
            out("rows per task, requested and in train:")
            out(format_task_table(report))
    if report.dedup:
        embedder = report.dedup["embedder"]
        scope = "within each image group" if report.dedup["scope"] == "group" else "across all images"
        verified = report.dedup.get("verification")
        if verified:
            out(
                f"dedup: images at cosine >= {report.dedup['threshold']} to a kept image, confirmed by verification "
                f"({verified['confirmed']:,} of {verified['pairs']:,} candidate pairs), removed, compared {scope}"
            )
        else:
            out(f"dedup: images at cosine >= {report.dedup['threshold']} to a kept image removed, compared {scope}")
        chosen_by = "dedup.embedder in the recipe" if report.recipe else "--embedder"
        out(f"dedup embedder ({chosen_by}): {embedder_text(embedder)}")
    out(format_table(report))
    if report.rejected:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in report.reject_reasons().items())
        out(f"rejected rows by reason: {reasons}")
    if report.duplicate_rows:
        out(f"exact duplicate rows (same picture and conversation text as an earlier row): {report.duplicate_rows}")
    if report.decontamination:
        data = report.decontamination
        verified = data.get("verification") or {}
        how = f", confirmed by verification ({verified.get('confirmed', 0):,} of {verified.get('pairs', 0):,} pairs)"
        chosen_by = "decontaminate.embedder in the recipe" if report.recipe else "--decontaminate-embedder"
        out(
            f"decontamination: cosine >= {data['threshold']}, embedder {embedder_text(data['embedder'])} ({chosen_by})"
            f"{how if verified else ''}"
        )
        out(format_benchmark_table(data))
    for repair in report.cache_repairs:
        out(f"cache repaired: {repair.file}: {repair.reason}; {repair.action}")
    for alarm in removal_alarms(report):
        out(f"ALARM: {alarm_line(alarm)}")


def embedder_text(embedder: object) -> str:
    """An embedder as a build report records it (its identity, or its name), as `key=value` pairs."""
    settings = embedder.items() if isinstance(embedder, dict) else [("model", embedder)]
    return ", ".join(f"{key}={value}" for key, value in settings)


def chosen_config(args: argparse.Namespace) -> tuple[str, dict[str, object]]:
    """The config that CONFIG or `--recipe` names, and its kwargs from the flags; refuses flags that do not apply."""
    if (args.recipe is None) == (args.config is None or args.config == RECIPE_CONFIG):
        raise ConfigError("give exactly one of CONFIG and --recipe")
    kwargs = config_kwargs(args)
    if args.recipe is None:
        check_flags_apply(args, [args.config])
        return args.config, kwargs
    check_recipe_flags(args, per_source_files=True)
    kwargs.pop("data_files", None)
    if args.data_files:
        kwargs["data_files"] = recipe_data_files(args.recipe, args.data_files)
    return RECIPE_CONFIG, {**kwargs, "recipe": args.recipe}


def recipe_data_files(recipe: str, values: list[str]) -> dict[str, list[str]]:
    """`--data-files CONFIG=FILE` values for `recipe`, as data_files={CONFIG: [FILE, ...]}; `ConfigError` for a
    value without `CONFIG=` or a CONFIG that is none of the recipe's sources, naming the allowed ones."""
    sources = [source.config for source in load_recipe(recipe, tuple(SOURCES)).sources]
    files: dict[str, list[str]] = {}
    for value in values:
        config, equals, file = value.partition("=")
        if not equals or not file:
            raise ConfigError(
                f"--data-files {value!r} is not allowed with --recipe: give CONFIG=FILE (FILE relative to --data-dir) "
                f"for one of the recipe's sources {sources}"
            )
        if config not in sources:
            raise ConfigError(
                f"--data-files {value!r}: unknown source {config!r} for this recipe; CONFIG is one of {sources}"
            )
        files.setdefault(config, []).append(file)
    return files


def cmd_build(args: argparse.Namespace) -> int:
    """Build a config (or `--recipe`) from local downloads, print its statistics table and write it as JSON."""
    config, kwargs = chosen_config(args)
    built = build(config, args.data_dir, args.cache_dir, **kwargs)
    print_report(built.report)
    splits = ", ".join(f"{name}: {len(rows):,}" for name, rows in built.dataset.items())
    out(f"splits: {splits}")
    stats_path = Path(args.stats_json or stats_file_name(built.report))
    built.report.save(stats_path)
    out(f"statistics written to {stats_path}")
    return 0


HUB_DEMO_RECIPE = "llava-next-665k"
"""The shipped recipe the demo builds last: a Hub release with the pictures inside, mixed with files."""


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the playground, build every source's plain config and two dedup configs with the thumbnail embedder."""
    folder = Path(args.out)
    playground = write_playground(folder / "playground")
    out(f"playground in {folder}:")
    subsets = [name for name in playground.sources if SOURCES[name].family]
    for name, fixture in playground.sources.items():
        if name in subsets:
            continue
        out(
            f"  {name:20s} {fixture.rows:3d} rows, {len(fixture.planted)} planted near-duplicates, "
            f"{len(fixture.expected_rejections)} rows to reject"
        )
    if subsets:
        out(f"  and {len(subsets)} subset configs of the releases above ({subsets[0]}, ...): llava-mixes build NAME")
    kwargs = {"embedder": args.embedder, "content_cache_dir": str(folder / "content_cache")}
    plain = [
        config.name
        for config in LlavaMixes.BUILDER_CONFIGS
        if not config.is_derived and not any(SOURCES[name].family for name in config.sources)
    ]
    for config in [plain[0], DEMO_DEDUP_CONFIGS[0], *plain[1:], *DEMO_DEDUP_CONFIGS[1:]]:
        report = build(config, str(folder / "playground"), str(folder / "hf_cache"), **kwargs).report
        print_report(report)
        report.save(folder / stats_file_name(report))
    evals = write_eval_playground(folder / "playground")
    config = DEMO_DEDUP_CONFIGS[0]
    report = build(
        config, str(folder / "playground"), str(folder / "hf_cache"), decontaminate=[str(evals.root)], **kwargs
    )
    out(f"\n{config}, decontaminated against the playground's benchmarks in {evals.root}:")
    print_report(report.report)
    report.report.save(folder / stats_file_name(report.report))
    recipe = write_demo_recipe(folder, evals.root)
    out(f"\nrecipe {recipe}, decontaminated against the same benchmarks:")
    built = build(
        RECIPE_CONFIG,
        str(folder / "playground"),
        str(folder / "hf_cache"),
        recipe=str(recipe),
        content_cache_dir=kwargs["content_cache_dir"],
    )
    print_report(built.report)
    built.report.save(folder / stats_file_name(built.report))
    out(f"\nshipped recipe {HUB_DEMO_RECIPE}: LLaVA-NeXT's Parquet rows and the 665K mix, copies removed across them:")
    built = build(
        RECIPE_CONFIG,
        str(folder / "playground"),
        str(folder / "hf_cache"),
        recipe=HUB_DEMO_RECIPE,
        content_cache_dir=kwargs["content_cache_dir"],
    )
    print_report(built.report)
    built.report.save(folder / stats_file_name(built.report))
    out(f"\nstatistics written to {folder}/*.stats.json")
    out("\nnext, try:")
    for line in next_commands(folder):
        out(f"  {line}")
    return 0


def next_commands(folder: Path) -> list[str]:
    """The three commands the demo suggests next, on its playground (each runnable as printed, offline)."""
    root, data = shlex.quote(str(folder)), shlex.quote(str(folder / "playground"))
    config = f"{DEMO_DEDUP_CONFIGS[0]} --data-dir {data} --embedder thumbnail"
    return [
        f"llava-mixes report {config} --out {root}/report  # what dedup removed, pair by pair, in index.html",
        f"llava-mixes export {config} --format llava --out {root}/exported  # the kept rows for LLaVA's training code",
        f"llava-mixes publish {config} --repo demo/llava_mixes --version 1.0.0 --local-dir {root}/release  "
        "# a release folder that plain `datasets` loads",
    ]


def write_demo_recipe(folder: Path, benchmarks: Path) -> Path:
    """The demo's recipe: the English sources, copies removed across them, the playground's benchmarks out."""
    path = folder / "llava-en-all-decontaminated.yaml"
    path.write_text(
        "sources: [mix665k, sharegpt4v-mix665k, svit-mix665k, textocr-gpt4v]\n"
        "dedup: {threshold: 0.8, scope: recipe, embedder: gradients}\n"
        f"decontaminate: {{references: [{os.path.relpath(benchmarks, folder)!r}]}}\n"
    )
    return path


def add_options(commands: argparse._SubParsersAction) -> None:
    """The `list`, `build` and `demo` subcommands."""
    sub = commands.add_parser("list", help="list the configs (or the embedders)")
    sub.add_argument(
        "--embedders", action="store_true", help="list the embedders and the scores that mean copy / near duplicate"
    )
    sub.add_argument(
        "--benchmarks", action="store_true", help="list the named benchmark sets (decontaminate=[SET or SET/NAME])"
    )
    sub.set_defaults(run=cmd_list)
    sub = commands.add_parser("build", help="build a config (or a recipe) and print its statistics")
    add_build_options(sub, config_optional=True)
    add_recipe_option(sub)
    sub.add_argument(
        "--stats-json",
        help="where to write the statistics (default: CONFIG.stats.json, with -dedup-T where --threshold is given, "
        "-decontaminated with --decontaminate; recipe-NAME.stats.json for a recipe)",
    )
    sub.set_defaults(run=cmd_build)
    sub = commands.add_parser(
        "demo", help="build the bundled playground (every source) offline and print its statistics"
    )
    sub.add_argument("--out", default="llava_mixes_demo", help="folder for the playground and caches")
    sub.add_argument("--embedder", default="thumbnail", help="embedder for the dedup config")
    sub.set_defaults(run=cmd_demo)
