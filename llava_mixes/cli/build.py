"""`llava-mixes list`, `build` and `demo`: the configs, one build with its statistics, the offline playground."""

from __future__ import annotations

import argparse
from pathlib import Path

from llava_mixes.build_report import BuildReport, format_table
from llava_mixes.builder import LlavaMixes, build
from llava_mixes.builders import SOURCES
from llava_mixes.cli.common import add_build_options, config_kwargs, out
from llava_mixes.playground import write_playground

DEMO_DEDUP_CONFIGS = ("mix665k-dedup-0.8", "mix665k+zh600k-dedup-0.8")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every named config with its sources and dedup threshold."""
    for config in LlavaMixes.BUILDER_CONFIGS:
        sources = ", ".join(SOURCES[name].name for name in config.sources)
        dedup = f"dedup >= {config.dedup_threshold} per image group" if config.is_dedup else "not deduplicated"
        out(f"{config.name:28s} v{config.version}  {dedup:34s} {sources}")
    return 0


def print_report(report: BuildReport) -> None:
    """Print a build's statistics table, its rejections by reason and its cache repairs."""
    out(f"\n{report.config_name} (v{report.version}): {report.rows_in:,} rows in")
    if report.dedup:
        embedder = report.dedup["embedder"]
        out(f"dedup: cosine >= {report.dedup['threshold']} per {report.dedup['scope']}, embedder {embedder}")
    out(format_table(report))
    if report.rejected:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in report.reject_reasons().items())
        out(f"rejected rows by reason: {reasons}")
    for repair in report.cache_repairs:
        out(f"cache repaired: {repair.file}: {repair.reason}; {repair.action}")


def cmd_build(args: argparse.Namespace) -> int:
    """Build a config from local downloads, print its statistics table and write it as JSON."""
    report = build(args.config, args.data_dir, args.cache_dir, **config_kwargs(args)).report
    print_report(report)
    stats_path = Path(args.stats_json or f"{args.config}.stats.json")
    report.save(stats_path)
    out(f"statistics written to {stats_path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the playground, build every source's plain config and two dedup configs with the thumbnail embedder."""
    folder = Path(args.out)
    playground = write_playground(folder / "playground")
    out(f"playground in {folder}:")
    for name, fixture in playground.sources.items():
        out(
            f"  {name:20s} {fixture.rows:3d} rows, {len(fixture.planted)} planted near-duplicates, "
            f"{len(fixture.expected_rejections)} rows to reject"
        )
    kwargs = {"embedder": args.embedder, "content_cache_dir": str(folder / "content_cache")}
    plain = [config.name for config in LlavaMixes.BUILDER_CONFIGS if not config.is_dedup]
    for config in [plain[0], DEMO_DEDUP_CONFIGS[0], *plain[1:], *DEMO_DEDUP_CONFIGS[1:]]:
        report = build(config, str(folder / "playground"), str(folder / "hf_cache"), **kwargs).report
        print_report(report)
        report.save(folder / f"{config}.stats.json")
    out(f"\nstatistics written to {folder}/*.stats.json")
    return 0


def add_options(commands: argparse._SubParsersAction) -> None:
    """The `list`, `build` and `demo` subcommands."""
    commands.add_parser("list", help="list the configs").set_defaults(run=cmd_list)
    sub = commands.add_parser("build", help="build a config and print its statistics")
    add_build_options(sub)
    sub.add_argument("--stats-json", help="where to write the statistics (default: CONFIG.stats.json)")
    sub.set_defaults(run=cmd_build)
    sub = commands.add_parser(
        "demo", help="build the bundled playground (every source) offline and print its statistics"
    )
    sub.add_argument("--out", default="llava_mixes_demo", help="folder for the playground and caches")
    sub.add_argument("--embedder", default="thumbnail", help="embedder for the dedup config")
    sub.set_defaults(run=cmd_demo)
