"""Image embedders: a weight-free grey thumbnail, and the class embedding of any HF vision checkpoint.

An embedder splits its work in two: `prepare(bytes)` decodes and preprocesses one image (thread-safe,
run in decode workers) and `embed(batch)` turns a stacked batch into L2-normalised float32 vectors.
`identity()` describes everything that changes the vectors; the embedding cache is keyed by it.

`thumbnail` (32x32 grey, mean-centred, so cosine = correlation of the thumbnails) finds re-encoded,
resized, brightened or contrast-changed and lightly cropped copies. It cannot find flipped, rotated or
heavily cropped copies, nor two photos of the same scene: that takes a ViT.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from llava_mixes import network
from llava_mixes.devices import cuda_available
from llava_mixes.embedding.base import Embedder
from llava_mixes.embedding.copy import GRADIENTS, TORCHSCRIPT_SUFFIXES, GradientsEmbedder, TorchScriptEmbedder
from llava_mixes.embedding.preprocess import PIXELS_VERSION, ProcessorSteps, to_8bit
from llava_mixes.embedding.weights import file_digest, folder_digest
from llava_mixes.errors import EmbedderUnavailableError, setting

logger = logging.getLogger(__name__)

THUMBNAIL = "thumbnail"
DEFAULT_EMBEDDER = "openai/clip-vit-large-patch14-336"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# On CUDA, runs of at least this many images compile the model (about 25 s, then about a quarter faster).
COMPILE_MIN_IMAGES = 4096
JPEG_MAGIC = b"\xff\xd8\xff"
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class ThumbnailEmbedder(Embedder):
    """A small grey thumbnail, mean-centred and L2-normalised (see the module docstring)."""

    VERSION = 1
    near_duplicate_threshold = 0.90
    """On the copy benchmark (bench/bench_near_duplicate_defaults.py): no distinct photo removed at 0.90, 79-86% of
    planted copies found; its one-stage dedup removes distinct documents at every threshold with useful recall."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.dim = size * size

    def identity(self) -> dict[str, Any]:
        return {"kind": THUMBNAIL, "size": self.size, "version": self.VERSION, "pixels": PIXELS_VERSION}

    def prepare(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                image.draft("L", (self.size * 2, self.size * 2))
            grey = to_8bit(image, "L").resize((self.size, self.size), Image.Resampling.BOX)
        vector = np.asarray(grey, dtype=np.float32).ravel()
        vector = vector - vector.mean()
        norm = float(np.linalg.norm(vector))
        if norm < 1e-3:
            # A flat image: give every flat image the same direction, orthogonal to all centred ones.
            return np.full(self.dim, 1.0 / np.sqrt(self.dim), dtype=np.float32)
        return vector / norm

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(batch, dtype=np.float32)


def near_duplicate_text(embedder: type[Embedder]) -> str:
    """The near-duplicate column of `EMBEDDER_GUIDE` for an embedder class: its measured threshold, and whether its
    pairs are verified before removal."""
    threshold = embedder.near_duplicate_threshold
    if threshold is None:
        return "-"
    return f">= {threshold:.2f}" + (" + verification" if embedder.verifies_pairs else "")


EMBEDDER_GUIDE = (
    (
        "openai/clip-vit-large-patch14-336",
        "ViT class embedding (default; any HF vision checkpoint); one stage: cosine alone decides",
        "-",
        ">= 0.8-0.9",
    ),
    (
        "thumbnail",
        "32x32 grey thumbnail, no weights; one stage, for photos: at 0.90 it removed 0% of distinct photos and found "
        "79-86% of planted copies (crops missed); NOT for documents: at 0.90 it removes up to 22% of distinct "
        "charts, tables, slides and screenshots (8-64% of each document kind at 0.80): use gradients",
        ">= 0.90 (misses most crops)",
        near_duplicate_text(ThumbnailEmbedder),
    ),
    (
        "gradients",
        "gradient-orientation grid, no weights; THE copy default (decontaminate, overlap, recipe copy dedup); every "
        "dedup verifies its pairs (~25 ms CPU a pair, within max_candidate_pairs): 0% of distinct pictures of any "
        "kind removed, 100% of planted copies found at 0.70-0.80; unverified, 0.80 would remove 70-98% of "
        "distinct pages, charts, tables, slides, screenshots and covers",
        ">= 0.70 + verification",
        near_duplicate_text(GradientsEmbedder),
    ),
    (
        "<file>.pt / .torchscript",
        "a TorchScript model, e.g. SSCD's sscd_disc_mixup (512-d); every dedup verifies its pairs",
        ">= 0.60 + verification",
        "-",
    ),
)
"""Each embedder, what it is (with the measured rates of its near-duplicate default: bench/RESULTS.md, "Near-duplicate
defaults of the weight-free embedders"), and the score at which it means "copy" and "near duplicate". For embedders
that verify (`Embedder.verifies_pairs`), "+ verification": pairs at that cosine are candidates that
`embedding.verify` confirms or rejects. The near-duplicate column of the weight-free embedders comes from the classes'
`near_duplicate_threshold` (`near_duplicate_text`), so the table and the classes cannot disagree."""


def _unavailable(model: str, cause: str) -> EmbedderUnavailableError:
    return EmbedderUnavailableError(
        f"cannot use the embedder {model!r}: {cause}. Either make the weights available (online, they are "
        f"downloaded on first use; offline, run `hf download {model}` on a connected machine, copy the HF "
        f"cache and set HF_HUB_OFFLINE=1, or pass {setting('embedder', placeholder='FOLDER')} with a local "
        f"checkpoint folder), or use an embedder that needs no weights: {setting('embedder', THUMBNAIL)} (near "
        f"duplicates) or {setting('embedder', GRADIENTS)} (copies, crops too). If the embeddings are already "
        f"cached, {setting('embedder_revision', placeholder='SHA')} (the commit they were made with) skips the "
        "weight lookup."
    )


def _resolve_device(device: str | None) -> str:
    return device or ("cuda" if cuda_available() else "cpu")


class HFVisionEmbedder(Embedder):
    """The pooled class embedding of an HF vision checkpoint (CLIP/SigLIP vision tower, ViT, DINOv2)."""

    decode_in_processes = True

    def __init__(
        self, model: str, revision: str | None = None, device: str | None = None, precision: str = "auto"
    ) -> None:
        self.model_name = model
        self.device = _resolve_device(device)
        on_cuda = self.device.startswith("cuda")
        self.precision = ("bf16" if on_cuda else "fp32") if precision == "auto" else precision
        self._model: Any = None
        self._processor: Any = None
        self._steps: ProcessorSteps | None = None
        self._compiled = False
        self._batch_size = 0
        self.model_ref = model
        local = Path(model).expanduser()
        if local.is_dir():
            self.location, self.revision = local.resolve(), folder_digest(local.resolve())[:20]
            self.model_ref = str(self.location)
            self.dim = self._dim_from_config(self.location / "config.json")
        elif revision is not None and COMMIT_RE.match(revision) and not self._cached_config(revision):
            self.location, self.revision, self.dim = None, revision, -1
        else:
            config_path = self._fetch_config(revision)
            self.location, self.revision = config_path.parent, config_path.parent.name
            self.dim = self._dim_from_config(config_path)

    def on_device(self, device: str) -> HFVisionEmbedder:
        twin = HFVisionEmbedder.__new__(HFVisionEmbedder)
        twin.__dict__.update(self.__dict__)
        twin.device, twin._model, twin._processor, twin._steps, twin._compiled = device, None, None, None, False
        return twin

    def _cached_config(self, revision: str) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.model_name, "config.json", revision=revision)
        return Path(found) if isinstance(found, str) else None

    def _fetch_config(self, revision: str | None) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

        down = network.unreachable()
        try:
            return Path(
                hf_hub_download(self.model_name, "config.json", revision=revision, local_files_only=down is not None)
            )
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, *network.NETWORK_ERRORS) as error:
            where = down or "the Hub is unreachable"
            raise _unavailable(self.model_name, f"it is not in the local HF cache and {where}") from error
        except HfHubHTTPError as error:
            raise _unavailable(self.model_name, f"the Hub refused it ({error})") from error
        except OSError as error:  # HF_HOME or the HF cache is not a usable folder
            raise _unavailable(self.model_name, f"the local HF cache cannot be used ({error})") from error

    @staticmethod
    def _dim_from_config(path: Path) -> int:
        config = json.loads(path.read_text())
        vision = config.get("vision_config") or config
        return int(vision.get("hidden_size") or config.get("hidden_size"))

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "hf",
            "model": self.model_ref,
            "revision": self.revision,
            "pooling": "pooler_output",
            "precision": self.precision,
            "preprocess": ("nvjpeg+" if self._decode_on_device else "")
            + ("gpu-resize" if self._resize_on_device else "pil-draft+processor"),
            "pixels": PIXELS_VERSION,
        }

    def load(self, expected_images: int = 0) -> None:
        if self._model is None:
            self._load_weights()
        if expected_images >= COMPILE_MIN_IMAGES and self.device.startswith("cuda") and not self._compiled:
            import torch

            self._model, self._compiled = torch.compile(self._model), True

    def _source(self) -> tuple[str, dict[str, str]]:
        if self.location is not None:
            return str(self.location), {}
        return self.model_name, {"revision": self.revision}

    def _load_processor(self) -> None:
        from transformers import AutoImageProcessor

        source, kwargs = self._source()
        try:
            self._processor = AutoImageProcessor.from_pretrained(source, backend="pil", **kwargs)
        except OSError as error:
            raise _unavailable(self.model_name, str(error).splitlines()[0]) from error
        self._steps = ProcessorSteps.of(self._processor)

    def _load_weights(self) -> None:
        import torch
        from transformers import AutoConfig, AutoModel, CLIPVisionModel, SiglipVisionModel

        source, kwargs = self._source()
        try:
            config = AutoConfig.from_pretrained(source, **kwargs)
            model_class = {
                "clip": CLIPVisionModel,
                "clip_vision_model": CLIPVisionModel,
                "siglip": SiglipVisionModel,
                "siglip_vision_model": SiglipVisionModel,
            }.get(config.model_type, AutoModel)
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
            model = model_class.from_pretrained(source, dtype=dtype, attn_implementation="sdpa", **kwargs)
        except OSError as error:
            raise _unavailable(self.model_name, str(error).splitlines()[0]) from error
        self._model = model.to(self.device).eval()
        if self._processor is None:
            self._load_processor()
        if self.dim < 0:
            vision = getattr(config, "vision_config", None) or config
            self.dim = int(vision.hidden_size)
        logger.info("loaded %s (%s, %s) on %s", self.model_name, self.revision, self.precision, self.device)

    @property
    def _resize_on_device(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def _decode_on_device(self) -> bool:
        """JPEGs decode on the GPU (nvJPEG) when torchvision is installed next to a CUDA device."""
        return self._resize_on_device and importlib.util.find_spec("torchvision") is not None

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode (JPEG at reduced scale where the target allows); on CUDA return the uint8 pixels
        `(height, width, 3)` for `device_batch`, else resize and crop exactly as the checkpoint's
        processor does (uint8, channels first). Needs the processor only, never the weights."""
        if self._processor is None:
            self._load_processor()
        if data[:3] == JPEG_MAGIC and self._decode_on_device and self._steps and self._steps.torch_mode:
            return np.frombuffer(data, dtype=np.uint8).copy()
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG" and self._steps is not None:
                image.draft("RGB", (self._steps.min_side, self._steps.min_side))
            rgb = to_8bit(image, "RGB")
            if self._steps is None:
                return self._processor(images=rgb, return_tensors="np")["pixel_values"][0]
            if self._resize_on_device and self._steps.torch_mode is not None:
                return np.array(rgb)
            return self._steps.cpu_geometry(self._processor, rgb)

    def submit(self, batch: Any) -> Callable[[], np.ndarray]:
        """Start the batch on the device and return at once; the returned function waits for its vectors."""
        import torch

        self.load()
        count = len(batch)
        on_cuda = self.device.startswith("cuda")
        with torch.inference_mode():
            if self._resize_on_device and self._steps is not None and self._steps.torch_mode is not None:
                pixels = self._steps.device_batch(list(batch), self.device)
            else:
                pixels = torch.as_tensor(batch)
                if on_cuda and not pixels.is_pinned():
                    pixels = pixels.pin_memory()
                pixels = pixels.to(self.device, non_blocking=on_cuda)
                if pixels.dtype == torch.uint8:
                    pixels = self._steps.finish(pixels)
            if self._compiled and count < self._batch_size:
                pad = pixels[-1:].expand(self._batch_size - count, *pixels.shape[1:])
                pixels = torch.cat([pixels, pad])  # one compiled shape for every batch
            self._batch_size = max(self._batch_size, len(pixels))
            output = self._model(pixel_values=pixels.to(self._model.dtype))
            pooled = getattr(output, "pooler_output", None)
            if pooled is None:
                pooled = output.last_hidden_state[:, 0]
            vectors = torch.nn.functional.normalize(pooled[:count].float(), dim=-1)
            if not on_cuda:
                result = vectors.numpy()
                return lambda: result
            host = torch.empty(vectors.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(vectors, non_blocking=True)
            done = torch.cuda.Event()
            done.record()

        def wait() -> np.ndarray:
            done.synchronize()
            return host.numpy()

        return wait

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.submit(batch)()


def embedder_fingerprint(embedder: str) -> str | None:
    """What identifies the embedder named `embedder` without loading it or asking the Hub: the content digest of a
    TorchScript file or a local checkpoint folder (see `weights`), the cache key of a weight-free embedder; None for
    a Hub model id (pin `embedder_revision` to a commit to fix its weights) or a local file or folder that is gone."""
    if embedder == THUMBNAIL:
        return ThumbnailEmbedder().key()
    if embedder == GRADIENTS:
        return GradientsEmbedder().key()
    local = Path(embedder).expanduser()
    if embedder.endswith(TORCHSCRIPT_SUFFIXES):
        return file_digest(local) if local.is_file() else None
    return folder_digest(local) if local.is_dir() else None


def resolve_embedder(
    embedder: str | Embedder, revision: str | None = None, device: str | None = None, precision: str = "auto"
) -> Embedder:
    """An `Embedder` from a name (`thumbnail`, `gradients`, a TorchScript file such as SSCD's, an HF model id or a
    local checkpoint folder) or an instance."""
    if isinstance(embedder, Embedder):
        return embedder
    if embedder == THUMBNAIL:
        return ThumbnailEmbedder()
    if embedder == GRADIENTS:
        return GradientsEmbedder()
    if embedder.endswith(TORCHSCRIPT_SUFFIXES):
        return TorchScriptEmbedder(embedder, device=device)
    return HFVisionEmbedder(embedder, revision=revision, device=device, precision=precision)
