"""`llava-mixes publish` and `check-repo`: release configs and recipes as a version of a Hub repo, and check a
repo tree."""

from __future__ import annotations

import argparse
from pathlib import Path

from llava_mixes.cli.build import out
from llava_mixes.cli.options import add_config_options, check_flags_apply, check_recipe_flags, config_kwargs
from llava_mixes.errors import ConfigError
from llava_mixes.publish.check_repo import check_repo
from llava_mixes.publish.parquet import DEFAULT_MAX_SHARD_SIZE, IMAGE_MODES
from llava_mixes.workflows.release import release


def cmd_publish(args: argparse.Namespace) -> int:
    """Build configs and recipes and release them as a version of a Hub repo (or a local tree)."""
    recipes = args.recipe or []
    if not args.configs and not recipes:
        raise ConfigError("name at least one CONFIG or --recipe to publish")
    if recipes:
        # The flags left after this check (devices, batches, decoding threads, caches) apply to recipe builds.
        check_recipe_flags(args)
    else:
        check_flags_apply(args, args.configs)
    result = release(
        args.configs,
        args.repo,
        args.version,
        args.data_dir,
        recipes=recipes,
        local_dir=args.local_dir,
        private=args.private,
        images=args.images,
        max_shard_size=args.max_shard_size,
        set_default=args.set_default,
        cache_dir=args.cache_dir,
        config_kwargs=config_kwargs(args),
        card_views=not args.no_card_views,
        token=args.token,
        commit_message=args.commit_message,
        branch=args.branch,
        create_pr=args.create_pr,
    )
    if result.tagged and not result.changed:
        out(f"v{result.version} of {', '.join(result.configs)} was merged into {result.target} but untagged:")
        out(f"  tagged v{result.version} at {result.revision}; no data written")
        return 0
    if not result.changed:
        out(f"v{result.version} of {result.target} already holds {', '.join(result.configs)}: nothing to do")
        return 0
    if not result.tagged:
        out(f"opened a pull request with v{result.version} of {', '.join(result.configs)} on {result.target}:")
        where = result.pr_url or "listed under the repo's pull requests"
        out(f"  {where} (commit {result.revision})")
        out(f"  {len(result.written)} files written, {len(result.deleted)} removed")
        out(f"  not tagged yet: after the merge, run this publish again without --create-pr to tag v{result.version}")
        return 0
    out(f"published v{result.version} of {', '.join(result.configs)} to {result.target} ({result.revision})")
    out(f"  {len(result.written)} files written, {len(result.deleted)} removed")
    return 0


def cmd_check_repo(args: argparse.Namespace) -> int:
    """Print every problem of a repo tree; exit 1 if there is one."""
    problems = check_repo(Path(args.dir))
    for problem in problems:
        out(f"FAIL {problem}")
    out(f"{args.dir}: {len(problems)} problem(s)" if problems else f"{args.dir}: ok")
    return 1 if problems else 0


def add_options(commands: argparse._SubParsersAction) -> None:
    """The `publish` and `check-repo` subcommands."""
    parser = commands.add_parser("publish", help="build configs and release them as a version of a Hub dataset repo")
    parser.add_argument("configs", nargs="*", metavar="CONFIG", help="config names from `llava-mixes list`")
    parser.add_argument(
        "--recipe",
        action="append",
        metavar="RECIPE",
        help="a recipe YAML file or a shipped recipe's name, published as the config recipe-<its name:>; "
        "repeatable, and may go with CONFIGs",
    )
    parser.add_argument("--repo", required=True, help="Hub dataset repo, ORG/NAME")
    parser.add_argument("--version", required=True, help="release version X.Y.Z (tagged vX.Y.Z)")
    parser.add_argument("--local-dir", help="write the repo tree to this folder instead of pushing (no network)")
    parser.add_argument("--private", action="store_true", help="create the Hub repo private")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored `hf auth login`); never printed")
    parser.add_argument("--commit-message", help="the release commit's message (default: Publish vX.Y.Z: CONFIGS)")
    parser.add_argument(
        "--branch",
        "--revision",
        dest="branch",
        help="commit to this Hub branch, created from main if absent, and read its manifest; the vX.Y.Z tags are "
        "repo-wide, so versions stay global (default: main)",
    )
    parser.add_argument(
        "--create-pr",
        action="store_true",
        help="open a Hub pull request with the release instead of committing; it is not tagged: after the merge, "
        "run the same publish without --create-pr to tag it",
    )
    parser.add_argument("--images", choices=IMAGE_MODES, default="bytes", help="bytes (viewer) or paths (smaller)")
    parser.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, help="uncompressed bytes per shard")
    parser.add_argument("--set-default", action="store_true", help="make the first CONFIG the repo's default")
    parser.add_argument(
        "--no-card-views",
        action="store_true",
        help="leave the threshold sweep and near-duplicate pairs out of the card (they take one pass per config)",
    )
    add_config_options(parser)
    parser.set_defaults(run=cmd_publish)
    parser = commands.add_parser(
        "check-repo", help="check a repo tree for what would break the Hub viewer or load_dataset"
    )
    parser.add_argument("dir", help="a repo tree, e.g. the --local-dir of a publish")
    parser.set_defaults(run=cmd_check_repo)
