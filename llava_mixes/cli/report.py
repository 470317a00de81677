"""`llava-mixes report`: build a config and write what deduplication does to its rows."""

from __future__ import annotations

import argparse

from llava_mixes.building.entry import configure, prepare
from llava_mixes.cli.build import out
from llava_mixes.cli.options import add_build_options, config_kwargs
from llava_mixes.dedup import THRESHOLDS
from llava_mixes.dedup.sweep import GRID, sweep_thresholds
from llava_mixes.report.cross import CROSS_GROUP_MODES, DEFAULT_SAMPLE, check_cross_group
from llava_mixes.report.write import EVERY, PAIRS_PER_BAND, analyse_built, embedder_of, report_folder, write_report


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report and print where it is and the kept images at the shown thresholds."""
    report_folder(args.out, args.data_dir)  # before anything is built: a bad --out fails at once
    thresholds = tuple(args.thresholds)
    sweep_thresholds(thresholds)
    check_cross_group(args.cross_group, args.cross_group_sample)
    dataset_builder = configure(args.config, args.data_dir, args.cache_dir, **config_kwargs(args))
    model = embedder_of(dataset_builder.config)
    analysed = analyse_built(
        prepare(dataset_builder),
        thresholds=thresholds,
        pairs_per_band=args.pairs_per_band,
        cross_group="skip" if args.no_cross_group else args.cross_group,
        model=model,
        nearest_from=args.nearest_from,
        cross_group_sample=args.cross_group_sample,
    )
    files = write_report(analysed, args.out, every=args.every)
    analysis = analysed.analysis
    table = analysis.table
    kept = ", ".join(f"{value:g}: {sum(table.kept_at(value).values()):,}" for value in analysis.shown)
    out(f"{analysis.config_name}: {sum(table.images):,} images; kept per threshold ({analysis.scope} scope): {kept}")
    if analysis.cross_group.mode == "sample":
        out(analysis.cross_group.describe())
    out(f"{len(analysis.pairs)} pairs shown; report in {files.page}")
    out(
        "also: " + ", ".join(str(path) for path in [files.sweep_png, files.nearest_png, files.summary, *files.samples])
    )
    return 0


def add_options(commands: argparse._SubParsersAction) -> None:
    """The `report` subcommand: the build options, and what to show."""
    parser = commands.add_parser("report", help="show what dedup removes: pair gallery, threshold sweep, sampled rows")
    add_build_options(parser)
    parser.add_argument("--out", required=True, help="folder for index.html, the figures and the samples")
    parser.add_argument(
        "--thresholds", nargs="+", type=float, default=list(THRESHOLDS), help="thresholds to label pairs at"
    )
    parser.add_argument("--every", type=int, default=EVERY, help="export every Nth row of each split")
    parser.add_argument("--pairs-per-band", type=int, default=PAIRS_PER_BAND, help="pairs shown per group and band")
    parser.add_argument(
        "--nearest-from",
        type=float,
        default=GRID[0],
        help="lowest nearest-neighbour similarity looked for; lower ones make one bar (default: %(default)s)",
    )
    parser.add_argument(
        "--cross-group",
        choices=CROSS_GROUP_MODES,
        default="exact",
        help=(
            "the pass that finds duplicates across groups and the global-scope sweep: exact (default; the costliest "
            "part, 1.7x the group pass: 100 of the 164 s of a 200K-image report on 2 cores), sample (the pass over a "
            "fixed share of the images, --cross-group-sample: about the share squared of exact, plus a recall check "
            "of 1,000 images against all; no global-scope table), or skip (group tables only)"
        ),
    )
    parser.add_argument(
        "--cross-group-sample",
        type=float,
        default=DEFAULT_SAMPLE,
        help="share of the images the sampled cross-group pass sees, in (0, 1] (default: %(default)s)",
    )
    parser.add_argument("--no-cross-group", action="store_true", help="the same as --cross-group skip")
    parser.set_defaults(run=cmd_report)
