"""Engines that fill the embedding cache: all write the same cache, so nothing downstream cares which ran.

- `local`: in this process, decode threads (PIL releases the GIL while it decodes and resizes) feed
  batches to the model; with several devices (`device="cuda"` on a multi-GPU node, or a list such as
  `"cuda:0,cuda:1"`), one spawned process per device takes an interleaved share of the images.
- `ray`: Ray Data, with a CPU actor pool that decodes and preprocesses and one model actor per device;
  the driver commits the vectors. Runs on a local Ray or the cluster that `RAY_ADDRESS` names.

Each image's bytes are checked against the SHA-256 recorded at build time before it is embedded; an image
that changed since is reported, never cached under the old hash.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets.utils import tqdm as hf_tqdm

from llava_mixes.embedding import cache as embedding_cache
from llava_mixes.embedding.cache import EmbeddingCache, ImageRef, read_image_bytes, vector_table
from llava_mixes.embedding.embedders import Embedder
from llava_mixes.errors import unknown_choice

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
CHANGED = "the file's bytes changed since the dataset was built"
NO_ERROR = ""  # Ray Data turns None into NaN in object columns; the empty string marks success there.
Changed = list[tuple[ImageRef, str]]


def prepare_checked(embedder: Embedder, ref: ImageRef, data: bytes) -> np.ndarray | str:
    """The prepared input for one image, `CHANGED` if its bytes changed, or the decoder's error message."""
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        return CHANGED
    try:
        return embedder.prepare(data)
    except Exception as error:  # noqa: BLE001 - any decoder failure is this image's data, recorded
        return f"{type(error).__name__}: {error}"


def _ordered_prefetch(
    items: list[ImageRef], work: Callable[[ImageRef], Any], pool: ThreadPoolExecutor, depth: int
) -> Iterator[tuple[ImageRef, Future]]:
    """Submit `work` for at most `depth` items ahead and yield the futures in input order."""
    pending: deque[tuple[ImageRef, Future]] = deque()
    upcoming = iter(items)
    for item in upcoming:
        pending.append((item, pool.submit(work, item)))
        if len(pending) >= depth:
            break
    while pending:
        item, future = pending.popleft()
        following = next(upcoming, None)
        if following is not None:
            pending.append((following, pool.submit(work, following)))
        yield item, future


class _PreparedImages:
    """A map-style dataset for a torch DataLoader: item i is `(i, prepared image or error message)`."""

    def __init__(self, embedder: Embedder, refs: list[ImageRef], dataset: datasets.Dataset | None) -> None:
        self.embedder, self.refs, self.dataset = embedder, refs, dataset

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | str]:
        ref = self.refs[index]
        return index, prepare_checked(self.embedder, ref, read_image_bytes(ref, self.dataset))


def _collate(items: list[tuple[int, np.ndarray | str]]) -> tuple[list[int], list[str | None], Any]:
    """Indices, errors, and the prepared images: one stacked tensor when they share a shape, else a list."""
    import torch

    ready = [torch.from_numpy(result) for _, result in items if not isinstance(result, str)]
    same_shape = len({tuple(image.shape) for image in ready}) <= 1
    images = (torch.stack(ready) if same_shape else ready) if ready else None
    return [index for index, _ in items], [r if isinstance(r, str) else None for _, r in items], images


def prepared_batches(
    embedder: Embedder, refs: list[ImageRef], dataset: datasets.Dataset | None, batch_size: int, num_workers: int
) -> Iterator[tuple[list[ImageRef], list[str | None], Any]]:
    """Batches of `(refs, error or None per ref, stack of the prepared images without error)`, in order.

    Heavy preprocessing runs in a torch DataLoader's worker processes (batches come back through shared
    memory, pinned for CUDA); light preprocessing in threads, which PIL lets decode in parallel.
    """
    if embedder.decode_in_processes and num_workers > 1:
        import torch.utils.data

        loader = torch.utils.data.DataLoader(
            _PreparedImages(embedder, refs, dataset),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_collate,
            pin_memory=str(getattr(embedder, "device", "cpu")).startswith("cuda"),
            prefetch_factor=4,
        )
        for indices, errors, stacked in loader:
            yield [refs[index] for index in indices], errors, stacked
        return

    def work(ref: ImageRef) -> np.ndarray | str:
        return prepare_checked(embedder, ref, read_image_bytes(ref, dataset))

    with ThreadPoolExecutor(num_workers) as pool:
        batch: list[tuple[ImageRef, np.ndarray | str]] = []
        for ref, future in _ordered_prefetch(refs, work, pool, depth=batch_size * 4):
            batch.append((ref, future.result()))
            if len(batch) == batch_size or ref is refs[-1]:
                ready = [result for _, result in batch if not isinstance(result, str)]
                errors = [result if isinstance(result, str) else None for _, result in batch]
                same_shape = len({image.shape for image in ready}) <= 1
                images = (np.stack(ready) if same_shape else ready) if ready else None
                yield [item for item, _ in batch], errors, images
                batch = []


def embed_in_process(
    cache: EmbeddingCache,
    refs: list[ImageRef],
    dataset: datasets.Dataset | None,
    batch_size: int,
    num_workers: int,
    progress_position: int = 0,
) -> tuple[int, Changed]:
    """Embed `refs` into the cache; return how many were embedded and the images whose bytes changed.

    The next batch is submitted to the device before the last one's vectors are collected, so the device
    computes while the host commits vectors and gathers the following batch.
    """
    embedder = cache.embedder
    embedder.load(expected_images=len(refs))
    changed: Changed = []
    in_flight: tuple[list[str], Callable[[], np.ndarray]] | None = None
    embedded = 0

    def collect(writer: Any) -> None:
        nonlocal embedded, in_flight
        if in_flight is not None:
            keys, wait = in_flight
            writer.add_table(vector_table(keys, wait(), [None] * len(keys)))
            embedded += len(keys)
            in_flight = None

    desc = f"Embedding images on {getattr(embedder, 'device', 'cpu')}"
    progress = hf_tqdm(total=len(refs), unit="img", desc=desc, position=progress_position)
    with cache.store.writer(embedding_cache.FLUSH_IMAGES) as writer:
        for batch_refs, errors, stacked in prepared_batches(embedder, refs, dataset, batch_size, num_workers):
            keys = []
            for ref, error in zip(batch_refs, errors, strict=True):
                if error is None:
                    keys.append(ref.sha256)
                elif error == CHANGED:
                    changed.append((ref, CHANGED))
                else:
                    writer.add_table(vector_table([ref.sha256], np.zeros((1, cache.dim)), [error]))
            if keys:
                started = (keys, embedder.submit(stacked))
                collect(writer)
                in_flight = started
            progress.update(len(batch_refs))
        collect(writer)
    progress.close()
    return embedded, changed


def _process_worker(
    cache_root: str,
    embedder: Embedder,
    refs: list[ImageRef],
    dataset: datasets.Dataset | None,
    batch_size: int,
    num_workers: int,
    rank: int,
) -> tuple[int, Changed]:
    return embed_in_process(EmbeddingCache(Path(cache_root), embedder), refs, dataset, batch_size, num_workers, rank)


def embed_local(
    cache: EmbeddingCache,
    refs: list[ImageRef],
    dataset: datasets.Dataset | None,
    batch_size: int,
    num_workers: int,
    devices: list[str],
) -> tuple[int, Changed]:
    """The `local` engine (module docstring)."""
    if len(devices) <= 1:
        return embed_in_process(cache, refs, dataset, batch_size, num_workers)
    threads = max(1, num_workers // len(devices))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(devices), mp_context=context) as pool:
        futures = [
            pool.submit(
                _process_worker,
                str(cache.cache_root),
                cache.embedder.on_device(device),
                refs[rank :: len(devices)],
                dataset,
                batch_size,
                threads,
                rank,
            )
            for rank, device in enumerate(devices)
        ]
        results = [future.result() for future in futures]
    cache.store.refresh()
    return sum(count for count, _ in results), [item for _, changed in results for item in changed]


class _RayPrepare:
    """Ray Data stage on CPU actors: read, check and preprocess a batch of images."""

    def __init__(self, embedder: Embedder, dataset: datasets.Dataset | None) -> None:
        self.embedder = embedder
        self.dataset = dataset

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        prepared, errors = [], []
        for sha, path, row in zip(batch["sha256"], batch["path"], batch["row"], strict=True):
            ref = ImageRef(str(sha), str(path) if path else None, int(row))
            result = prepare_checked(self.embedder, ref, read_image_bytes(ref, self.dataset))
            prepared.append(None if isinstance(result, str) else result)
            errors.append(result if isinstance(result, str) else NO_ERROR)
        return {"sha256": batch["sha256"], "input": prepared, "error": errors}


class _RayEmbed:
    """Ray Data stage on model actors: embed the prepared images of a batch."""

    def __init__(self, embedder: Embedder, device: str) -> None:
        self.embedder = embedder.on_device(device)
        self.embedder.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        ok = [index for index, error in enumerate(batch["error"]) if error == NO_ERROR]
        vectors = np.zeros((len(batch["sha256"]), self.embedder.dim), dtype=np.float16)
        if ok:
            vectors[ok] = self.embedder.embed(np.stack([batch["input"][index] for index in ok]))
        return {"sha256": batch["sha256"], "vector": vectors, "error": batch["error"]}


def embed_ray(
    cache: EmbeddingCache,
    refs: list[ImageRef],
    dataset: datasets.Dataset | None,
    batch_size: int,
    num_workers: int,
    devices: list[str],
) -> tuple[int, Changed]:
    """The `ray` engine (module docstring); needs `pip install llava_mixes[ray]`."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("engine='ray' needs Ray: pip install 'llava_mixes[ray]'") from error
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    on_gpu = devices[0].startswith("cuda")
    items = [{"sha256": ref.sha256, "path": ref.path or "", "row": ref.row} for ref in refs]
    prepared = ray.data.from_items(items).map_batches(
        _RayPrepare,
        fn_constructor_kwargs={"embedder": cache.embedder.on_device("cpu"), "dataset": dataset},
        batch_size=batch_size,
        concurrency=max(1, num_workers),
        num_cpus=1,
    )
    vectors = prepared.map_batches(
        _RayEmbed,
        fn_constructor_kwargs={"embedder": cache.embedder, "device": "cuda" if on_gpu else "cpu"},
        batch_size=batch_size,
        concurrency=len(devices),
        num_gpus=1 if on_gpu else 0,
        num_cpus=0 if on_gpu else 1,
    )
    by_sha = {ref.sha256: ref for ref in refs}
    embedded, changed = 0, []
    progress = hf_tqdm(total=len(refs), unit="img", desc="Embedding images (ray)")
    with cache.store.writer(embedding_cache.FLUSH_IMAGES) as writer:
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            keys = [str(sha) for sha in batch["sha256"]]
            errors = [None if error == NO_ERROR else str(error) for error in batch["error"]]
            keep = [index for index, error in enumerate(errors) if error != CHANGED]
            changed.extend((by_sha[keys[index]], CHANGED) for index, error in enumerate(errors) if error == CHANGED)
            if keep:
                writer.add_table(
                    vector_table([keys[i] for i in keep], batch["vector"][keep], [errors[i] for i in keep])
                )
            embedded += sum(errors[index] is None for index in keep)
            progress.update(len(keys))
    progress.close()
    return embedded, changed


def run_engine(
    engine: str,
    cache: EmbeddingCache,
    refs: list[ImageRef],
    dataset: datasets.Dataset | None,
    batch_size: int,
    num_workers: int,
    devices: list[str],
) -> tuple[int, Changed]:
    """Embed `refs` into `cache` with the named engine."""
    runners = {"local": embed_local, "ray": embed_ray}
    if engine not in ENGINES:
        raise unknown_choice("engine", engine, ENGINES)
    return runners[engine](cache, refs, dataset, batch_size, num_workers, devices)
