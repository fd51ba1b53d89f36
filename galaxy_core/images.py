"""Image decoding and the one eval preprocessing that training, prediction, Grad-CAM and the UI share.

``open_image`` turns a path or raw bytes into an RGB PIL image, refusing what is not a usable
picture (empty, truncated, non-image, decompression bombs) with an ``ImageError`` that says
why, and converting any colour mode sensibly (greyscale, palette, RGBA, CMYK, 16-bit).

``prepare`` crops the centre square (``crop_fraction`` of the shorter side) and resizes it to
``size`` pixels as uint8 (3, size, size). JPEGs are decoded at a reduced DCT scale when that
still leaves at least ``size`` pixels across the crop (PIL's ``draft``): several times faster,
and deterministic, so it is part of the preprocessing itself, identical in training and use.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import Preprocess

MAX_PIXELS = 40_000_000  # larger images are refused as possible decompression bombs
MAX_BYTES = 25 * 1024 * 1024  # uploads above this are refused before decoding
SUPPORTED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "WEBP", "GIF")


class ImageError(ValueError):
    """An image that cannot be used, with a message fit to show a user."""


def open_image(source, name: str | None = None) -> Image.Image:
    """Open ``source`` (a path, bytes, or binary file object) as a decoded-on-demand RGB image."""
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "upload")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError(f"{label}: the file is empty")
        if len(data) > MAX_BYTES:
            raise ImageError(f"{label}: {len(data) / 1e6:.1f} MB is over the "
                             f"{MAX_BYTES // (1024 * 1024)} MB limit")
        source = io.BytesIO(data)
    elif isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise ImageError(f"{label}: no such image file")
        if os.path.getsize(source) == 0:
            raise ImageError(f"{label}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            if image.format not in SUPPORTED_FORMATS:
                raise ImageError(f"{label}: format {image.format} is not supported; use one of "
                                 f"{', '.join(SUPPORTED_FORMATS)}")
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{label}: {image.width}x{image.height} pixels is over the "
                                 f"{MAX_PIXELS // 1_000_000} megapixel limit")
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: not a readable image ({type(exc).__name__})") from exc
    except OSError as exc:
        raise ImageError(f"{label}: cannot read the image ({exc})") from exc
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit or float greyscale: scale the actual range to 0..255, don't just truncate
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        array = (array - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(array)
        image = Image.fromarray(np.nan_to_num(array).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # transparent pixels become black sky, not white
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")  # PIL handles CMYK, YCbCr, palette and greyscale here


def prepare(source, size: int, crop_fraction: float, name: str | None = None) -> torch.Tensor:
    """Decode ``source`` and return its centre crop resized to uint8 (3, size, size)."""
    image = open_image(source, name)
    label = name or "image"
    try:
        if image.format == "JPEG":
            # the smallest DCT scale that still keeps >= size pixels across the crop
            wanted = math.ceil(size / crop_fraction)
            shorter = min(image.size)
            scale = max(1, min(8, shorter // wanted))
            if scale > 1:
                image.draft("RGB", (math.ceil(image.width / scale), math.ceil(image.height / scale)))
        image.load()
        image = _to_rgb(image)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{label}: the image data is corrupt or truncated ({exc})") from exc
    width, height = image.size
    side = max(1.0, min(width, height) * crop_fraction)
    left, top = (width - side) / 2, (height - side) / 2
    resized = image.resize((size, size), Image.Resampling.BILINEAR,
                           box=(left, top, left + side, top + side))
    array = np.asarray(resized, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def prepare_for_model(source, preprocess: Preprocess, name: str | None = None) -> torch.Tensor:
    """The eval transform's first half: uint8 (3, S, S) as the model's preprocessing defines."""
    return prepare(source, preprocess.image_size, preprocess.crop_fraction, name)


def normalize(batch_uint8: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float (B, 3, S, S), scaled to [0,1] and ImageNet-normalised."""
    return normalize_float(batch_uint8.float().div_(255.0), preprocess)


def normalize_float(batch: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """float (B, 3, S, S) in [0,1] -> ImageNet-normalised."""
    mean = torch.tensor(preprocess.mean, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
    return (batch - mean) / std


def display_crop(source, preprocess: Preprocess, size: int = 320) -> np.ndarray:
    """The region the model sees, as an RGB uint8 (size, size, 3) array for display and overlays."""
    return prepare(source, size, preprocess.crop_fraction).permute(1, 2, 0).numpy()


UPLOAD_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def upload_problem(name: str, size: int) -> str | None:
    """Why an upload named ``name`` of ``size`` bytes is refused before decoding, or None.
    (The browser's uploader accepts any file, so that the page can say why it refuses one.)"""
    extension = os.path.splitext(name)[1].lower()
    if extension not in UPLOAD_EXTENSIONS:
        kind = f"a {extension} file" if extension else "a file without an extension"
        return (f"{kind} is not an image this app reads; use "
                f"{', '.join(e.lstrip('.').upper() for e in UPLOAD_EXTENSIONS)}")
    if size == 0:
        return "the file is empty"
    if size > MAX_BYTES:
        return f"{size / 1e6:.1f} MB is over the {MAX_BYTES // (1024 * 1024)} MB limit"
    return None
