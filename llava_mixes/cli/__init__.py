"""The `llava-mixes` command line: the only place that parses arguments and prints."""

from llava_mixes.cli.main import main

__all__ = ["main"]
