"""Workflows that compose stages in one call: `release` (build -> analyse -> publish, what `llava-mixes publish`
runs) and `run_export` (build or read a published copy -> export, what `llava-mixes export` runs)."""

from llava_mixes.workflows.handover import run_export
from llava_mixes.workflows.release import release

__all__ = ["release", "run_export"]
