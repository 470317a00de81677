"""What every command shares: printing, the build options and their mapping onto config kwargs."""

from __future__ import annotations

import argparse
import sys

from llava_mixes import schema
from llava_mixes.dedup import SCOPES, SEARCHES
from llava_mixes.embedding.embedders import PRECISIONS
from llava_mixes.embedding.engines import ENGINES

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
}
"""Each build flag's destination and the config field it sets."""


def out(text: str) -> None:
    """Print one line of a command's output."""
    sys.stdout.write(text + "\n")


def config_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """The config kwargs the build flags given on the command line set."""
    return {field: getattr(args, arg) for arg, field in CONFIG_KWARGS.items() if getattr(args, arg) is not None}


def add_build_options(parser: argparse.ArgumentParser) -> None:
    """A config name and every build flag."""
    parser.add_argument("config", help="a config name from `llava-mixes list`")
    add_config_options(parser)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The flags that choose the data, the config's settings and the caches."""
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
    parser.add_argument("--on-bad-records", choices=schema.BAD_RECORD_POLICIES)
    parser.add_argument("--cache-dir", help="datasets cache folder (default: HF_DATASETS_CACHE)")
    parser.add_argument("--content-cache-dir", help="image-check and embedding cache (default: LLAVA_MIXES_CACHE)")
