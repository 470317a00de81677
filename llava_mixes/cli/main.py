"""The `llava-mixes` command line: list configs, build one (printing its statistics), run the demo, report
dedup, publish a release and check a repo tree. The parser and error handling live here; each command group
in its own module."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys

import datasets
from tqdm.contrib.logging import logging_redirect_tqdm

from llava_mixes.cli import build, conventions, export, options, overlap, publish, report, verify
from llava_mixes.errors import LlavaMixesError, command_line_spelling

logger = logging.getLogger("llava_mixes")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LIBRARY_LOGGERS = ("datasets", "huggingface_hub")
"""Libraries whose log records reach the user through our one handler."""
DESCRIPTION = (
    "LLaVA-style instruction sets as clean, deduplicated, versioned `datasets` configs: list the configs, build "
    "one and print its statistics, verify a cached build's files, run the offline demo, report what dedup removes, "
    "publish a release, check a repo tree, export for training code."
)


def parser() -> argparse.ArgumentParser:
    """The `llava-mixes` parser with every subcommand."""
    root = argparse.ArgumentParser(prog="llava-mixes", description=DESCRIPTION)
    root.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS)
    commands = root.add_subparsers(dest="command", required=True)
    build.add_options(commands)
    verify.add_options(commands)
    publish.add_options(commands)
    report.add_options(commands)
    export.add_options(commands)
    overlap.add_options(commands)
    conventions.apply(root, commands)
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
    """Run one command; the log levels it sets (`--log-level`) are put back when it returns, so a process that runs
    several commands (a test suite, a notebook) keeps its own."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    level, verbosity = logger.level, datasets.utils.logging.get_verbosity()
    logger.setLevel(args.log_level)
    datasets.utils.logging.set_verbosity(logging.getLevelName(args.log_level))
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader of stdout went away (`llava-mixes list | head`): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        logger.setLevel(level)
        datasets.utils.logging.set_verbosity(verbosity)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command: a project error is one logged line and exit 2, as is a full or read-only disk."""
    for library in LIBRARY_LOGGERS:
        # Their own stderr handlers would print each of their warnings a second time, unformatted.
        logging.getLogger(library).handlers.clear()
    try:
        # Log records go through tqdm's `write`, so that a warning never lands on a progress bar's line.
        with command_line_spelling(options.FLAGS), logging_redirect_tqdm():
            return args.run(args)
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
