"""`llava-mixes export`: a config's kept rows as the file LLaVA, LLaMA-Factory, ms-swift or anything else reads."""

from __future__ import annotations

import argparse
import json

from llava_mixes.cli.build import out
from llava_mixes.cli.options import add_config_options, config_kwargs
from llava_mixes.exporters import FORMATS
from llava_mixes.workflows.handover import run_export


def cmd_export(args: argparse.Namespace) -> int:
    """Export the config, print how to point the training code at it, and what was written and skipped."""
    if (args.data_dir is None) == (args.from_ is None):
        args.parser.error("give exactly one of --data-dir (build the config) and --from (a published copy)")
    kwargs = config_kwargs(args)
    result, hub_entry = run_export(
        args.config,
        args.format,
        args.out,
        data_dir=args.data_dir,
        from_=args.from_,
        revision=args.revision,
        image_folder=args.image_folder,
        images_dir=args.images_dir,
        name=args.name,
        cache_dir=args.cache_dir,
        config_kwargs=kwargs or None,
    )
    out(result.usage())
    out(result.summary())
    if hub_entry is not None:
        out("dataset_info.json entry that reads the published copy from the Hub:")
        out(json.dumps(hub_entry, indent=2, ensure_ascii=False))
    return 0


def add_options(commands: argparse._SubParsersAction) -> None:
    """The `export` subcommand: what to export, where from, and the build flags."""
    parser = commands.add_parser(
        "export", help="write a config's kept rows for LLaVA, LLaMA-Factory, ms-swift or as JSON Lines"
    )
    parser.add_argument("config", help="a config name from `llava-mixes list`")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="the training code's format")
    parser.add_argument("--out", required=True, help="folder for the data file (and dataset_info.json, images/)")
    parser.add_argument("--from", dest="from_", help="a published copy instead of a build: a folder or ORG/NAME")
    parser.add_argument("--revision", help="with --from: the release to read, e.g. v1.0.0")
    parser.add_argument("--image-folder", help="where pictures are referenced from (default: --data-dir)")
    parser.add_argument("--images-dir", help="copy (or write) the pictures here instead (default: OUT/images)")
    parser.add_argument("--name", help="the dataset's name in the files (default: the config name)")
    add_config_options(parser, data_dir_required=False)
    parser.set_defaults(run=cmd_export, parser=parser)
