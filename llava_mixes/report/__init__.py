"""What deduplication removes, for people: the one-pass analysis, sampled pairs, the gallery page, the plots,
sampled rows, and the report written from a built config."""
