"""Shipped benchmark lists (package data): `llava-1.5-evals.yaml` and `lmms-eval-images.yaml`."""
