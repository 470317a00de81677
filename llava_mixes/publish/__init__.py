"""Releases: built configs as a versioned, viewer-ready Hub dataset repo (or local tree), with the manifest,
version rules, dataset card and card views, and `check-repo`."""
