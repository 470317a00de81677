"""Pixels as every embedder sees them (`to_8bit`), and an HF image processor's steps, split so that the
heavy parts run where they are cheapest.

`to_8bit` turns any decoded image into 8-bit grey or RGB as it looks: 16- and 32-bit greys and float
images are scaled to 8 bits (PIL's own conversion clips them, so a 16-bit PNG became flat white),
transparent images are laid on white, palette, CMYK and 1-bit images are converted. Every embedder
calls it before anything else; `PIXELS_VERSION` is part of each embedder's identity, so vectors made
before a change to it are never reused.

`ProcessorSteps` reads a PIL-backend processor's settings (resize to a shortest edge or a fixed size,
centre crop, rescale, normalise). Two ways to run them:

- exact (CPU devices): `cpu_geometry` resizes and crops uint8 images with the processor's own methods in
  the decode workers, and `finish` rescales and normalises as the processor does (float64 rescale,
  float32 normalise): bit-identical to calling the processor.
- on the GPU (CUDA devices): decode workers only decode; `device_batch` resizes (antialiased bicubic or
  bilinear, rounded to uint8 as PIL does), crops and normalises on the device, images of one size at a
  time. It matches the processor to within a few uint8 levels per pixel (a test checks it), and the CPU
  bicubic resize, which costs more than the JPEG decode, leaves the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

PIXELS_VERSION = 2
"""Bumped on every change to `to_8bit`: it is part of each embedder's identity (the embedding cache key)."""
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WHITE = (255, 255, 255, 255)


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float grey image scaled to 8 bits: 16-bit modes by their full range;
    `I` and `F` by the range their values fill (0-1, 0-255 or 0-65535), else stretched from min to max."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    offset, scale = 0.0, 255.0
    if image.mode.startswith("I;16"):
        scale = 65535.0
    elif low >= 0 and high <= 1 and image.mode == "F":
        scale = 1.0
    elif low >= 0 and high <= 255:
        scale = 255.0
    elif low >= 0 and high <= 65535:
        scale = 65535.0
    else:
        offset, scale = low, max(high - low, 1e-12)
    grey = np.clip(np.rint((values - offset) * (255.0 / scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L")


def to_8bit(image: Image.Image, mode: str) -> Image.Image:
    """`image` as 8-bit `mode` (`"L"` or `"RGB"`), as it looks (see the module docstring)."""
    if image.mode in _WIDE_GREY_MODES:
        image = _grey_to_8bit(image)
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        image = Image.alpha_composite(Image.new("RGBA", image.size, _WHITE), image.convert("RGBA"))
    return image if image.mode == mode else image.convert(mode)


class ProcessorSteps:
    """The settings of one processor, applied in two halves (module docstring)."""

    def __init__(self, processor: Any) -> None:
        self.crop = (processor.crop_size.height, processor.crop_size.width) if processor.do_center_crop else None
        self.rescale = float(processor.rescale_factor) if processor.do_rescale else None
        self.mean = list(processor.image_mean) if processor.do_normalize else None
        self.std = list(processor.image_std) if processor.do_normalize else None
        self.size = processor.size
        sides = [processor.size.shortest_edge, processor.size.height, processor.size.width]
        self.min_side = max(int(side) for side in sides if side)
        modes = {int(Image.Resampling.BICUBIC): "bicubic", int(Image.Resampling.BILINEAR): "bilinear"}
        self.torch_mode = modes.get(int(processor.resample)) if processor.resample is not None else None

    @classmethod
    def of(cls, processor: Any) -> ProcessorSteps | None:
        """The steps of `processor`, or None when it does something these steps do not reproduce."""
        if getattr(processor, "backend", None) != "pil" or getattr(processor, "do_pad", False):
            return None
        size = processor.size
        plain_size = size is not None and (size.shortest_edge or (size.height and size.width))
        unsupported = size is not None and (size.longest_edge or size.max_height or size.max_pixels)
        return cls(processor) if processor.do_resize and plain_size and not unsupported else None

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The resized (height, width), computed by transformers' own function."""
        if not self.size.shortest_edge:
            return int(self.size.height), int(self.size.width)
        from transformers.image_transforms import get_resize_output_image_size

        shape_only = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (3, height, width), (0, 0, 0))
        new_height, new_width = get_resize_output_image_size(
            shape_only, size=self.size.shortest_edge, default_to_square=False, input_data_format="channels_first"
        )
        return int(new_height), int(new_width)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the centre crop, placed as transformers places it."""
        if self.crop is None:
            return 0, 0, height, width
        crop_height, crop_width = self.crop
        return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width

    def device_batch(self, images: list[Any], device: str) -> Any:
        """uint8 images of any sizes, decoded `(height, width, 3)` or JPEG bytes `(n,)` (decoded here with
        nvJPEG), numpy or torch -> one normalised float32 batch on `device`."""
        import torch

        on_device = [
            torch.as_tensor(image).to(device, non_blocking=True) if image.ndim == 3 else None for image in images
        ]
        encoded = [index for index, image in enumerate(images) if image.ndim == 1]
        if encoded:
            for index, decoded in zip(encoded, _decode_jpegs([images[i] for i in encoded], device), strict=True):
                on_device[index] = decoded
        shapes = [tuple(image.shape[:2]) for image in on_device]
        _, _, crop_height, crop_width = self.crop_box(*self.output_size(*shapes[0]))
        batch = torch.empty((len(images), 3, crop_height, crop_width), dtype=torch.float32, device=device)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index, shape in enumerate(shapes):
            by_shape.setdefault(shape, []).append(index)
        for (height, width), members in by_shape.items():
            pixels = torch.stack([on_device[index] for index in members]).permute(0, 3, 1, 2).float()
            new_height, new_width = self.output_size(height, width)
            resized = torch.nn.functional.interpolate(
                pixels, size=(new_height, new_width), mode=self.torch_mode, antialias=True, align_corners=False
            )
            top, left, _, _ = self.crop_box(new_height, new_width)
            cropped = resized[:, :, top : top + crop_height, left : left + crop_width]
            batch[torch.as_tensor(members, device=device)] = cropped.round().clamp(0, 255)
        return self.finish(batch)

    def cpu_geometry(self, processor: Any, rgb: Image.Image) -> np.ndarray:
        """Resize and crop with the processor's own methods; uint8, channels first."""
        image = np.moveaxis(np.asarray(rgb), -1, 0)
        image = processor.resize(image=image, size=processor.size, resample=processor.resample)
        if self.crop is not None:
            image = processor.center_crop(image, processor.crop_size)
        return np.ascontiguousarray(image, dtype=np.uint8)

    def finish(self, pixels: Any) -> Any:
        """Rescale (float64, as numpy does) and normalise (float32) a batch of uint8 or float pixels."""
        import torch

        values = pixels.to(torch.float64)
        if self.rescale is not None:
            values = values * self.rescale
        values = values.to(torch.float32)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=torch.float32, device=values.device)[None, :, None, None]
            std = torch.tensor(self.std, dtype=torch.float32, device=values.device)[None, :, None, None]
            values = (values - mean) / std
        return values


def _decode_jpegs(blobs: list[Any], device: str) -> list[Any]:
    """JPEG bytes -> uint8 `(height, width, 3)` tensors on `device`: nvJPEG in one batch, else PIL one by one
    (for the rare files nvJPEG refuses, such as CMYK JPEGs)."""
    import io

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.as_tensor(blob) for blob in blobs]
    try:
        return [image.permute(1, 2, 0) for image in decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)]
    except RuntimeError:
        decoded = []
        for blob in tensors:
            with Image.open(io.BytesIO(blob.numpy().tobytes())) as image:
                decoded.append(torch.from_numpy(np.array(to_8bit(image, "RGB"))).to(device))
        return decoded
