"""What `hf` and `datasets-cli` users expect of a command line: `--version`, defaults in every `--help`, and
examples under each command's help."""

from __future__ import annotations

import argparse
from importlib import metadata

EXAMPLES = {
    "list": ["llava-mixes list", "llava-mixes list --embedders", "llava-mixes list --benchmarks"],
    "build": [
        "HF_HUB_OFFLINE=1 llava-mixes build mix665k-dedup-0.8 --data-dir playground/data --embedder thumbnail"
        "  # offline: no weights to download",
        "llava-mixes build mix665k-dedup-0.8 --data-dir playground/data --batch-size 256 --num-workers 16",
        "llava-mixes build mix665k --data-dir playground/data --threshold 0.85 --embedder thumbnail",
        "llava-mixes build textocr-gpt4v --data-dir D --data-files textocr-gpt4v.train.jsonl",
        "llava-mixes build --recipe llava-en-all --data-dir D --data-files textocr-gpt4v=textocr-gpt4v.train.jsonl",
    ],
    "demo": ["llava-mixes demo --out llava_mixes_demo"],
    "report": ["llava-mixes report mix665k-dedup-0.8 --data-dir playground/data --out report/"],
    "publish": [
        "llava-mixes publish mix665k mix665k-dedup-0.8 --repo my-org/llava_mixes --version 1.0.0 "
        "--data-dir playground/data",
        "llava-mixes publish mix665k-dedup-0.8 --repo demo/llava_mixes --version 1.0.0 --local-dir OUT "
        "--data-dir D/playground --embedder thumbnail",
        "llava-mixes publish --recipe mix.yaml --repo my-org/llava_mixes --version 1.1.0 --data-dir playground/data",
    ],
    "check-repo": ["llava-mixes check-repo OUT"],
    "verify": ["llava-mixes verify mix665k-dedup-0.8 --data-dir playground/data"],
    "export": ["llava-mixes export mix665k-dedup-0.8 --format llava --out exported --data-dir playground/data"],
}
"""Lines shown under `llava-mixes COMMAND --help`, each one runnable as written (with your folders)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default where it has one (not None, not a switch's False) and keeps the examples'
    line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def version() -> str:
    """This package's version, and those of the libraries whose behaviour it follows."""
    libraries = ", ".join(f"{name} {metadata.version(name)}" for name in ("datasets", "huggingface_hub"))
    return f"llava-mixes {metadata.version('llava_mixes')} ({libraries})"


def apply(root: argparse.ArgumentParser, commands: argparse._SubParsersAction) -> None:
    """Give `root` a `--version` and the defaults-showing help, and each command its examples."""
    root.add_argument("--version", action="version", version=version())
    root.formatter_class = HelpFormatter
    root.epilog = "examples:\n" + "\n".join(f"  {line}" for lines in EXAMPLES.values() for line in lines[:1])
    for name, command in commands.choices.items():
        command.formatter_class = HelpFormatter
        if name in EXAMPLES:
            command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
