"""The flags every build-like command shares (the data, the config's settings, the caches), their mapping onto
config kwargs, and the checks that refuse flags that would do nothing, naming the flag that serves instead."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from llava_mixes import schema
from llava_mixes.building.config import CONFIG_NAMES, LlavaMixesConfig
from llava_mixes.building.mixing import NOT_FOR_RECIPES, recipe_remedy
from llava_mixes.decontam.benchmark_repos import MIRROR_ENV
from llava_mixes.dedup import SCOPES, SEARCHES
from llava_mixes.embedding.embedders import PRECISIONS
from llava_mixes.embedding.engines import ENGINES
from llava_mixes.errors import ConfigError
from llava_mixes.plugin import DEDUP_MARK

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
    "decontaminate_embedder": "decontaminate_embedder",
    "data_files": "data_files",
    "max_rejected": "max_rejected",
}
"""Each build flag's destination and the config field it sets."""

FLAGS = {
    "data_dir": "--data-dir",
    "images": "--images",
    "format": "--format",
    **{field: f"--{arg.replace('_', '-')}" for arg, field in CONFIG_KWARGS.items()},
}
"""The command line's flag for each config field that has one: how error messages name it here
(`errors.command_line_spelling`)."""


def config_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """The config kwargs the build flags given on the command line set; `--benchmark-mirror` sets
    `$LLAVA_MIXES_BENCHMARK_MIRROR` for this command instead (where named benchmark sets are read offline)."""
    if getattr(args, "benchmark_mirror", None):
        os.environ[MIRROR_ENV] = str(Path(args.benchmark_mirror).absolute())
    return {field: getattr(args, arg) for arg, field in CONFIG_KWARGS.items() if getattr(args, arg) is not None}


EMBEDDING_FLAGS = ("scope", "search", "engine", "embedder", "embedder_revision", "device", "precision", "batch_size")
"""The flags that act only where images are embedded and compared: in a deduplicated config."""
DECONTAMINATION_USES = ("device", "batch_size")
"""The embedding flags that decontamination uses too (it embeds with its own embedder, --decontaminate-embedder,
on the device and in the batches these set)."""
DECONTAMINATION_FLAGS = ("decontaminate_embedder", "decontaminate_threshold")
"""The flags that act only with --decontaminate."""


def _flag(dest: str) -> str:
    return f"--{dest.replace('_', '-')}"


def _given(value: object) -> str:
    """A flag's value as it was typed (each of a repeated flag's values, quoted where the shell needs it)."""
    values = value if isinstance(value, list) else [value]
    return " ".join(shlex.quote(str(each)) for each in values)


def check_flags_apply(args: argparse.Namespace, configs: list[str]) -> None:
    """Refuse flags that would do nothing for `configs`, naming the flag that serves that step instead, and a
    `--threshold` that contradicts a named config (it would build another threshold under that name)."""
    named = {name: float(name.rsplit(DEDUP_MARK, 1)[1]) for name in configs if DEDUP_MARK in name}
    decontaminates = bool(getattr(args, "decontaminate", None))
    idle = [_flag(flag) for flag in DECONTAMINATION_FLAGS if getattr(args, flag, None) is not None]
    if idle and not decontaminates:
        verb = "does" if len(idle) == 1 else "do"
        raise ConfigError(
            f"{', '.join(idle)} {verb} nothing without --decontaminate REFERENCE (the benchmarks whose pictures "
            "leave train)"
        )
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
    used = DECONTAMINATION_USES if decontaminates else ()
    given = [_flag(flag) for flag in EMBEDDING_FLAGS if flag not in used and getattr(args, flag, None) is not None]
    if given and not named:
        verb = "does" if len(given) == 1 else "do"
        if decontaminates:
            why = (
                f"{'it sets' if len(given) == 1 else 'they set'} dedup's embedding, and no image is embedded for "
                "dedup here (not deduplicated); decontamination compares pictures with its own embedder, set by "
                f"--decontaminate-embedder (default: {_default('decontaminate_embedder')}). To deduplicate too, "
                "choose a -dedup- config "
                "(`llava-mixes list`) or add --threshold"
            )
        else:
            why = (
                "not deduplicated, so no image is embedded or compared; choose a -dedup- config (`llava-mixes list`) "
                "or add --threshold"
            )
        raise ConfigError(f"{', '.join(given)} {verb} not apply to {', '.join(configs)}: {why}")


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
        f"{_flag(flag)} {_given(getattr(args, flag))} is not allowed with --recipe: {recipe_remedy(field)}"
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
        "--embedder",
        help="dedup's embedder: an HF model id or local path, 'thumbnail' or 'gradients' (no weights); "
        f"decontamination has its own, --decontaminate-embedder (default: {_default('embedder')})",
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
        help="a benchmark's pictures to take out of train (image folder, LLaVA eval folder, .jsonl, .tsv, Hub id, a "
        "named set such as llava-1.5-evals or one entry of it such as llava-1.5-evals/pope); repeatable",
    )
    parser.add_argument(
        "--decontaminate-embedder",
        help="the embedder that compares pictures with the benchmarks' (--embedder is dedup's): 'gradients', "
        f"'thumbnail', a TorchScript file or an HF model id (default: {_default('decontaminate_embedder')})",
    )
    parser.add_argument(
        "--decontaminate-threshold", type=float, help="copy cosine (default: the decontamination embedder's)"
    )
    parser.add_argument(
        "--benchmark-mirror",
        metavar="DIR",
        help="a folder holding named benchmarks' Hub repos as owner/name/ (`hf download --local-dir`), read before "
        f"the Hub cache (default: ${MIRROR_ENV})",
    )
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
