"""The `llava-mixes` command line: list configs, build one (printing its statistics), run the demo, report dedup."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import datasets

from llava_mixes import builder as builder_module
from llava_mixes.build_report import REPORT_FILE, BuildReport, format_table
from llava_mixes.builders import SOURCES
from llava_mixes.config import BAD_RECORD_POLICIES, ENGINES, PRECISIONS, SCOPES, SEARCHES
from llava_mixes.errors import LlavaMixesError
from llava_mixes.plugin import DATASET_NAME, register
from llava_mixes.publish.check_repo import cmd_check_repo
from llava_mixes.publish.parquet import DEFAULT_MAX_SHARD_SIZE, IMAGE_MODES
from llava_mixes.publish.publish import cmd_publish

logger = logging.getLogger("llava_mixes")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every named config with its sources and dedup threshold."""
    for config in builder_module.LlavaMixes.BUILDER_CONFIGS:
        sources = ", ".join(SOURCES[name].name for name in config.sources)
        dedup = f"dedup >= {config.dedup_threshold} per image group" if config.is_dedup else "not deduplicated"
        _out(f"{config.name:28s} v{config.version}  {dedup:34s} {sources}")
    return 0


def _config_kwargs(args: argparse.Namespace) -> dict[str, object]:
    names = {
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
    }
    return {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}


def build(config: str, data_dir: str, cache_dir: str | None = None, **config_kwargs: object) -> BuildReport:
    """Build (or reuse) one config and return its report."""
    register()
    dataset_builder = datasets.load_dataset_builder(
        DATASET_NAME, config, data_dir=data_dir, cache_dir=cache_dir, **config_kwargs
    )
    dataset_builder.download_and_prepare()
    return BuildReport.load(Path(dataset_builder.cache_dir) / REPORT_FILE)


def _print_report(report: BuildReport) -> None:
    _out(f"\n{report.config_name} (v{report.version}): {report.rows_in:,} rows in")
    if report.dedup:
        embedder = report.dedup["embedder"]
        _out(f"dedup: cosine >= {report.dedup['threshold']} per {report.dedup['scope']}, embedder {embedder}")
    _out(format_table(report))
    if report.rejected:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in report.reject_reasons().items())
        _out(f"rejected rows by reason: {reasons}")
    for repair in report.cache_repairs:
        _out(f"cache repaired: {repair.file}: {repair.reason}; {repair.action}")


def cmd_build(args: argparse.Namespace) -> int:
    """Build a config from local downloads, print its statistics table and write it as JSON."""
    report = build(args.config, args.data_dir, args.cache_dir, **_config_kwargs(args))
    _print_report(report)
    stats_path = Path(args.stats_json or f"{args.config}.stats.json")
    report.save(stats_path)
    _out(f"statistics written to {stats_path}")
    return 0


DEMO_DEDUP_CONFIGS = ("mix665k-dedup-0.8", "mix665k+zh600k-dedup-0.8")


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the playground, build every source's plain config and two dedup configs with the thumbnail embedder."""
    from llava_mixes.playground.layout import write_playground

    out = Path(args.out)
    playground = write_playground(out / "playground")
    _out(f"playground in {out}:")
    for name, fixture in playground.sources.items():
        _out(
            f"  {name:20s} {fixture.rows:3d} rows, {len(fixture.planted)} planted near-duplicates, "
            f"{len(fixture.expected_rejections)} rows to reject"
        )
    kwargs = {"embedder": args.embedder, "content_cache_dir": str(out / "content_cache")}
    plain = [config.name for config in builder_module.LlavaMixes.BUILDER_CONFIGS if not config.is_dedup]
    for config in [plain[0], DEMO_DEDUP_CONFIGS[0], *plain[1:], *DEMO_DEDUP_CONFIGS[1:]]:
        report = build(config, str(out / "playground"), str(out / "hf_cache"), **kwargs)
        _print_report(report)
        report.save(out / f"{config}.stats.json")
    _out(f"\nstatistics written to {out}/*.stats.json")
    return 0


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a config name from `llava-mixes list`")
    _add_config_options(parser)


def _add_publish_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="config names from `llava-mixes list`")
    parser.add_argument("--repo", required=True, help="Hub dataset repo, ORG/NAME")
    parser.add_argument("--version", required=True, help="release version X.Y.Z (tagged vX.Y.Z)")
    parser.add_argument("--local-dir", help="write the repo tree to this folder instead of pushing (no network)")
    parser.add_argument("--private", action="store_true", help="create the Hub repo private")
    parser.add_argument("--images", choices=IMAGE_MODES, default="bytes", help="bytes (viewer) or paths (smaller)")
    parser.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, help="uncompressed bytes per shard")
    parser.add_argument("--set-default", action="store_true", help="make the first CONFIG the repo's default")
    parser.add_argument(
        "--no-card-views",
        action="store_true",
        help="leave the threshold sweep and near-duplicate pairs out of the card (they take one pass per config)",
    )
    _add_config_options(parser)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", required=True, help="folder with the raw annotation files and images")
    parser.add_argument("--threshold", type=float, help="dedup cosine threshold, e.g. 0.85")
    parser.add_argument("--scope", choices=SCOPES, help="compare images per image group or globally")
    parser.add_argument("--search", choices=SEARCHES, help="exact (default) or ivf (approximate, needs faiss)")
    parser.add_argument("--engine", choices=ENGINES, help="local (default) or ray (needs the ray extra)")
    parser.add_argument("--embedder", help="HF model id or local path, or 'thumbnail'")
    parser.add_argument("--embedder-revision", help="hub branch, tag or commit of the embedder")
    parser.add_argument("--device", help="torch device, e.g. cuda:0 (default: cuda when available)")
    parser.add_argument("--precision", choices=PRECISIONS)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--num-workers", type=int, help="image decoding threads")
    parser.add_argument("--on-bad-records", choices=BAD_RECORD_POLICIES)
    parser.add_argument("--cache-dir", help="datasets cache folder (default: HF_DATASETS_CACHE)")
    parser.add_argument("--content-cache-dir", help="image-check and embedding cache (default: LLAVA_MIXES_CACHE)")


def cmd_report(args: argparse.Namespace) -> int:
    """Write the dedup report of a config: gallery page, threshold sweep, sampled exports."""
    from llava_mixes.report.write import run_report

    return run_report(args)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "list": (cmd_list, "list the configs"),
    "build": (cmd_build, "build a config and print its statistics"),
    "demo": (cmd_demo, "build the bundled playground (every source) offline and print its statistics"),
    "publish": (cmd_publish, "build configs and release them as a version of a Hub dataset repo"),
    "check-repo": (cmd_check_repo, "check a repo tree for what would break the Hub viewer or load_dataset"),
    "report": (cmd_report, "show what dedup removes: pair gallery, threshold sweep, sampled rows"),
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="llava-mixes", description=__doc__)
    root.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS)
    commands = root.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text)
        if name == "build":
            _add_build_options(sub)
            sub.add_argument("--stats-json", help="where to write the statistics (default: CONFIG.stats.json)")
        if name == "report":
            from llava_mixes.report.write import add_report_options

            add_report_options(sub)
        if name == "demo":
            sub.add_argument("--out", default="llava_mixes_demo", help="folder for the playground and caches")
            sub.add_argument("--embedder", default="thumbnail", help="embedder for the dedup config")
        if name == "publish":
            _add_publish_options(sub)
        if name == "check-repo":
            sub.add_argument("dir", help="a repo tree, e.g. the --local-dir of a publish")
    return root


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT, errno.EFBIG})


def storage_error(error: BaseException) -> OSError | None:
    """The disk-full, quota, read-only or permission `OSError` behind `error` (itself or a cause), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(args.log_level)
    datasets.utils.logging.set_verbosity(logging.getLevelName(args.log_level))
    try:
        return COMMANDS[args.command][0](args)
    except (LlavaMixesError, json.JSONDecodeError) as error:
        logger.error("%s", error)
        return 2
    except Exception as error:
        cause = storage_error(error)
        if cause is None:
            raise
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        folder = getattr(args, "cache_dir", None) or datasets.config.HF_DATASETS_CACHE
        where = cause.filename or f"a file under the datasets cache {folder}"
        logger.error(
            "file system error on %s: %s. Free some space or fix the permissions there, or choose another folder "
            "(--cache-dir for datasets, --content-cache-dir for image checks and embeddings)",
            where,
            reason,
        )
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
