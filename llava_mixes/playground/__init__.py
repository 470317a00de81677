"""The demo playground (every source in its on-disk format, planted near-duplicates, the quirks of the
real files), its generated pictures, and synthetic data for the benches."""

from llava_mixes.playground.layout import Playground, write_playground

__all__ = ["Playground", "write_playground"]
