"""Mixes of several built configs: how much their pictures overlap (`source_overlap`), and its heatmap."""

from llava_mixes.mixes.overlap import Overlap, format_overlap, source_overlap

__all__ = ["Overlap", "format_overlap", "source_overlap"]
