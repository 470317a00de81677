"""`llava-mixes overlap`: how much the pictures of several configs overlap, pair by pair, in mix order."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llava_mixes import schema
from llava_mixes.building.entry import build
from llava_mixes.cli.build import out
from llava_mixes.recipes.heatmap import overlap_png
from llava_mixes.recipes.overlap import DEFAULT_EMBEDDER, format_overlap, source_overlap
from llava_mixes.store import write_atomic


def cmd_overlap(args: argparse.Namespace) -> int:
    """Build (or reuse) each config, compare their `train` pictures, print the table, write JSON and PNG."""
    build_kwargs = {
        name: value
        for name, value in (("content_cache_dir", args.content_cache_dir), ("on_bad_records", args.on_bad_records))
        if value is not None
    }
    sources = {
        config: build(config, args.data_dir, args.cache_dir, **build_kwargs).dataset[schema.TRAIN_SPLIT]
        for config in dict.fromkeys(args.configs)
    }
    overlap = source_overlap(
        sources,
        args.threshold,
        args.embedder,
        cache_dir=args.content_cache_dir,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
    )
    out(
        f"overlap at cosine >= {overlap.threshold:g} with {overlap.embedder['kind']} ({overlap.embedded} pictures "
        f"embedded, {overlap.cached} from the cache, {overlap.not_embedded} compared byte for byte only)"
    )
    out(format_overlap(overlap))
    if args.json:
        write_atomic(Path(args.json), json.dumps(overlap.to_json(), indent=1).encode())
        out(f"JSON written to {args.json}")
    if args.png:
        write_atomic(Path(args.png), overlap_png(overlap))
        out(f"heatmap written to {args.png}")
    return 0


def add_options(commands: argparse._SubParsersAction) -> None:
    """The `overlap` subcommand."""
    parser = commands.add_parser(
        "overlap", help="pictures shared between configs (same bytes, near copies) and rows lost in mix order"
    )
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="two or more config names, in mix order")
    parser.add_argument("--data-dir", required=True, help="folder with the raw annotation files and images")
    parser.add_argument(
        "--threshold",
        type=float,
        help="cosine at or above which pictures are shared (default: the embedder's copy threshold)",
    )
    parser.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER,
        help="embedder comparing pictures (default: "
        f"{DEFAULT_EMBEDDER}); 'thumbnail', an HF model id or a TorchScript file",
    )
    parser.add_argument("--device", help="torch device, e.g. cuda:0 (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, help="image decoding threads")
    parser.add_argument("--on-bad-records", choices=schema.BAD_RECORD_POLICIES)
    parser.add_argument("--cache-dir", help="datasets cache folder (default: HF_DATASETS_CACHE)")
    parser.add_argument("--content-cache-dir", help="image-check and embedding cache (default: LLAVA_MIXES_CACHE)")
    parser.add_argument("--json", help="write the overlap as JSON here")
    parser.add_argument("--png", help="write the heatmap PNG here (needs the report extra)")
    parser.set_defaults(run=cmd_overlap)
