"""`llava-mixes list`, `build` and `demo` (the configs, one build with its statistics, the offline playground),
and what every command shares: printing, the build flags and their mapping onto config kwargs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from llava_mixes import schema
from llava_mixes.builders import SOURCES
from llava_mixes.building.builder import LlavaMixes
from llava_mixes.building.config import CONFIG_NAMES, RECIPE_CONFIG, LlavaMixesConfig
from llava_mixes.building.entry import build
from llava_mixes.building.mixing import NOT_FOR_RECIPES, recipe_refusal
from llava_mixes.building.report import BuildReport, alarm_line, removal_alarms, stats_file_name
from llava_mixes.building.tables import format_recipe_table, format_table
from llava_mixes.decontam import format_benchmark_table
from llava_mixes.dedup import SCOPES, SEARCHES
from llava_mixes.embedding.embedders import EMBEDDER_GUIDE, PRECISIONS
from llava_mixes.embedding.engines import ENGINES
from llava_mixes.errors import ConfigError
from llava_mixes.playground import write_playground
from llava_mixes.playground.eval import write_eval_playground
from llava_mixes.plugin import DEDUP_MARK
from llava_mixes.recipes.recipe import load_recipe

DEMO_DEDUP_CONFIGS = ("mix665k-dedup-0.8", "mix665k+zh600k-dedup-0.8")

CONFIG_KWARGS = {
    "threshold": "dedup_threshold",
    "scope": "dedup_scope",
    "search": "dedup_search",
    "embedder": "embedder",
    "embedder_revision": "embedder_revision",
    "device": "device",
    "precision": "precision",
    "batch_size": "batch_size",
    "num_workers": "num_workers",
    "engine": "engine",
    "content_cache_dir": "content_cache_dir",
    "on_bad_records": "on_bad_records",
    "decontaminate": "decontaminate",
    "decontaminate_threshold": "decontaminate_threshold",
    "data_files": "data_files",
    "max_rejected": "max_rejected",
}
"""Each build flag's destination and the config field it sets."""


def out(text: str) -> None:
    """Print one line of a command's output."""
    sys.stdout.write(text + "\n")


def config_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """The config kwargs the build flags given on the command line set."""
    return {field: getattr(args, arg) for arg, field in CONFIG_KWARGS.items() if getattr(args, arg) is not None}


EMBEDDING_FLAGS = ("scope", "search", "engine", "embedder", "embedder_revision", "device", "precision", "batch_size")
"""The flags that act only where images are embedded and compared: in a deduplicated config."""


def check_flags_apply(args: argparse.Namespace, configs: list[str]) -> None:
    """Refuse flags that would do nothing for `configs`, and a `--threshold` that contradicts a named config
    (it would build another threshold under that name)."""
    named = {name: float(name.rsplit(DEDUP_MARK, 1)[1]) for name in configs if DEDUP_MARK in name}
    if args.threshold is not None:
        for name, value in named.items():
            if value != args.threshold:
                base = name.rsplit(DEDUP_MARK, 1)[0]
                other = f"{base}{DEDUP_MARK}{args.threshold:g}"
                ways = f"{other}, or {base} --threshold {args.threshold:g}" if other in CONFIG_NAMES else ""
                raise ConfigError(
                    f"--threshold {args.threshold:g} contradicts {name}, whose threshold is {value:g}; "
                    f"name the config you mean: {ways or f'{base} --threshold {args.threshold:g}'}"
                )
        return
    # Decontamination embeds too (with its own embedder), on the device and in the batches these flags set.
    used = ("device", "batch_size") if getattr(args, "decontaminate", None) else ()
    flags = [flag for flag in EMBEDDING_FLAGS if flag not in used]
    given = [f"--{flag.replace('_', '-')}" for flag in flags if getattr(args, flag, None) is not None]
    if given and not named:
        verb = "does" if len(given) == 1 else "do"
        raise ConfigError(
            f"{', '.join(given)} {verb} not apply to {', '.join(configs)}: not deduplicated, so no image is "
            "embedded or compared; choose a -dedup- config (`llava-mixes list`) or add --threshold"
        )


def check_recipe_flags(args: argparse.Namespace, per_source_files: bool = False) -> None:
    """Refuse, with `--recipe`, the flags a recipe build would not use (the recipe sets dedup and
    decontamination itself: `mixing.NOT_FOR_RECIPES`), naming each flag and the recipe key that sets it instead;
    `--data-files` (CONFIG=FILE) is taken where `per_source_files` (one recipe, built or verified)."""
    if getattr(args, "data_files", None) and not per_source_files:
        raise ConfigError(
            f"--data-files {' '.join(args.data_files)!r} is not allowed here: name each source's files with "
            "`data_files: FILE` on its entry in the recipe, relative to --data-dir"
        )
    given = [
        f"--{flag.replace('_', '-')}: {recipe_refusal(field, getattr(args, flag))}"
        for flag, field in CONFIG_KWARGS.items()
        if field in NOT_FOR_RECIPES and field != "data_files" and getattr(args, flag, None) is not None
    ]
    if given:
        raise ConfigError("; ".join(given))


def _default(field: str) -> object:
    """The default of a `LlavaMixesConfig` field, for the help text."""
    return LlavaMixesConfig.__dataclass_fields__[field].default


def add_build_options(parser: argparse.ArgumentParser, config_optional: bool = False) -> None:
    """A config name and every build flag."""
    parser.add_argument("config", nargs="?" if config_optional else None, help="a config name from `llava-mixes list`")
    add_config_options(parser)


def add_config_options(parser: argparse.ArgumentParser, data_dir_required: bool = True) -> None:
    """The flags that choose the data, the config's settings and the caches."""
    parser.add_argument(
        "--data-dir", required=data_dir_required, help="folder with the raw annotation files and images"
    )
    parser.add_argument(
        "--data-files",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="the annotation file(s) of a one-source config under another name, relative to --data-dir "
        "(as datasets' data_files=); with --recipe, CONFIG=FILE for one of the recipe's sources (repeatable; "
        "overrides the recipe's `data_files:` for it); default: the names the source expects (see README, Sources)",
    )
    parser.add_argument(
        "--threshold", type=float, help="dedup cosine threshold, e.g. 0.85 (default: the config's, if any)"
    )
    parser.add_argument(
        "--scope",
        choices=SCOPES,
        help=f"compare images per image group or globally (default: {_default('dedup_scope')})",
    )
    parser.add_argument(
        "--search",
        choices=SEARCHES,
        help=f"exact or ivf (approximate, needs faiss) (default: {_default('dedup_search')})",
    )
    parser.add_argument(
        "--engine", choices=ENGINES, help=f"local or ray (needs the ray extra) (default: {_default('engine')})"
    )
    parser.add_argument(
        "--embedder", help=f"HF model id or local path, 'thumbnail' or 'gradients' (default: {_default('embedder')})"
    )
    parser.add_argument("--embedder-revision", help="hub branch, tag or commit of the embedder (default: main)")
    parser.add_argument("--device", help="torch device, e.g. cuda:0 (default: every GPU when available, else cpu)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="embedder precision; auto: bf16 on CUDA, fp32 on CPU; part of the cache key "
        f"(default: {_default('precision')})",
    )
    parser.add_argument(
        "--batch-size", type=int, help=f"images per embedder forward pass (default: {_default('batch_size')})"
    )
    parser.add_argument("--num-workers", type=int, help="image decoding threads (default: one per core, at most 8)")
    parser.add_argument(
        "--on-bad-records",
        choices=schema.BAD_RECORD_POLICIES,
        help="skip: reject a bad row with its reason, listed in the statistics; error: stop at the first one "
        f"(default: {_default('on_bad_records')})",
    )
    parser.add_argument("--cache-dir", help="datasets cache folder (default: HF_DATASETS_CACHE)")
    parser.add_argument("--content-cache-dir", help="image-check and embedding cache (default: LLAVA_MIXES_CACHE)")
    parser.add_argument(
        "--decontaminate",
        action="append",
        metavar="REFERENCE",
        help="a benchmark's pictures to take out of train (image folder, LLaVA eval folder, .jsonl, .tsv, Hub id); "
        "repeatable",
    )
    parser.add_argument("--decontaminate-threshold", type=float, help="copy cosine (default: the embedder's)")
    parser.add_argument(
        "--max-rejected",
        type=float,
        metavar="SHARE",
        help="the share of rows (0 to 1) that may be lost with missing image folders; a build that loses more fails, "
        f"naming the folders (default: {_default('max_rejected'):g})",
    )


def add_recipe_option(parser: argparse.ArgumentParser) -> None:
    """`--recipe`, which names a recipe instead of CONFIG."""
    parser.add_argument("--recipe", help="a recipe YAML file or a shipped recipe's name, instead of CONFIG")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every named config with its sources and dedup threshold, or (`--embedders`) every embedder."""
    if args.embedders:
        out(f"{'embedder':36s} {'copy':28s} {'near duplicate':15s} what")
        for name, what, copy, near in EMBEDDER_GUIDE:
            out(f"{name:36s} {copy:28s} {near:15s} {what}")
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
    if report.dedup:
        embedder = report.dedup["embedder"]
        scope = "within each image group" if report.dedup["scope"] == "group" else "across all images"
        out(f"dedup: images at cosine >= {report.dedup['threshold']} to a kept image removed, compared {scope}")
        settings = embedder.items() if isinstance(embedder, dict) else [("model", embedder)]
        out("embedder: " + ", ".join(f"{key}={value}" for key, value in settings))
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
        out(f"decontamination: cosine >= {data['threshold']}, embedder {data['embedder']}{how if verified else ''}")
        out(format_benchmark_table(data))
    for repair in report.cache_repairs:
        out(f"cache repaired: {repair.file}: {repair.reason}; {repair.action}")
    for alarm in removal_alarms(report):
        out(f"ALARM: {alarm_line(alarm)}")


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
    out(f"\nstatistics written to {folder}/*.stats.json")
    return 0


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
