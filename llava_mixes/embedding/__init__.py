"""Vectors for images: embedders, the content-keyed embedding cache, the engines that fill it, and the
`add_embeddings` transform (a `Dataset.map`)."""

from llava_mixes.embedding.cache import EmbeddingCache
from llava_mixes.embedding.embedders import Embedder, resolve_embedder
from llava_mixes.embedding.transform import add_embeddings, attach_embeddings, fill_cache

__all__ = ["Embedder", "EmbeddingCache", "add_embeddings", "attach_embeddings", "fill_cache", "resolve_embedder"]
