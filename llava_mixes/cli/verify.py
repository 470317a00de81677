"""`llava-mixes verify`: every file of a cached build (and of the plain builds it was made from) hashed against the
checksums its build recorded. Exit 0: whole; 1: damaged, each damaged file named; 2: the config cannot be set up."""

from __future__ import annotations

import argparse

from llava_mixes.building.entry import verify
from llava_mixes.cli.build import chosen_config, out
from llava_mixes.cli.options import add_build_options, add_recipe_option


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the cached build of CONFIG (or `--recipe`) with the build flags given; print one line per folder."""
    config, kwargs = chosen_config(args)
    damaged = 0
    for folder, problems in verify(config, args.data_dir, args.cache_dir, **kwargs).items():
        if not problems:
            out(f"ok: {folder}")
            continue
        damaged += 1
        out(f"damaged: {folder}")
        for problem in problems:
            out(f"  {problem}")
    if damaged:
        out(
            f"{damaged} build folder(s) damaged: remove each (the next build or load makes it again), or rebuild "
            "with load_dataset(..., download_mode='force_redownload')"
        )
    return 1 if damaged else 0


def add_options(commands: argparse._SubParsersAction) -> None:
    """The `verify` subcommand: the build's config flags, so that it finds the same build folder."""
    sub = commands.add_parser("verify", help="check a cached build's files against the checksums its build recorded")
    add_build_options(sub, config_optional=True)
    add_recipe_option(sub)
    sub.set_defaults(run=cmd_verify)
