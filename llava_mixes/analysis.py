"""The dedup analysis behind reports and dataset cards, kept at its documented name (it lives in `report.analysis`)."""

from llava_mixes.report.analysis import DedupAnalysis, analyse, card_summary

__all__ = ["DedupAnalysis", "analyse", "card_summary"]
