"""Image decoding and the one eval preprocessing that training, prediction, Grad-CAM and the UI share.

``open_image`` opens a path or raw bytes as a PIL image, refusing what is not a usable picture
(empty, truncated, non-image, decompression bombs) with an ``ImageError`` that says why, before
any pixel is decoded. ``prepare`` converts any colour mode sensibly (greyscale, palette, RGBA,
CMYK, 16-bit, float).

What one decode may cost is bounded from the header: at most ``MAX_PIXELS`` pixels and at most
``MAX_DECODED_BYTES`` of decoded samples (width x height x bands x bytes per sample). The
budget is the decoded size of the largest 8-bit RGB picture the pixel limit admits, so no RGB or
greyscale photo is refused by it; modes that carry more per pixel (RGBA, CMYK, 32-bit integer
or float) are held to the same bytes. 16-bit and float images are scaled to 8 bits a block of
rows at a time, greyscale is cropped and resized before it becomes RGB, and transparency is
pasted onto black sky in one new image, so decoding makes no full-size float copy, no RGB copy
of a grey picture and no compositing copies (measured with ``python -m bench.decode_memory``:
a 39.6 MP 16-bit PNG went from 906 to 127 MB of peak memory, a 30 MP RGBA PNG from 573 to 230).

``prepare`` crops the centre square (``crop_fraction`` of the shorter side) and resizes it to
``size`` pixels as uint8 (3, size, size). JPEGs are decoded at a reduced DCT scale when that
still leaves at least ``size`` pixels across the crop (PIL's ``draft``): several times faster,
and deterministic, so it is part of the preprocessing itself, identical in training and use.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
import warnings
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import Preprocess
from .fits import FITS_EXTENSIONS, NO_DATA_KEY, BandSet, FitsError, is_fits, read_fits
from .framing import choose_frame, crop

MAX_PIXELS = 40_000_000  # larger images are refused as possible decompression bombs
MAX_BYTES = 25 * 1024 * 1024  # uploads above this are refused before decoding
MAX_DECODED_BYTES = 3 * MAX_PIXELS  # 120 MB: the pixel limit's 8-bit RGB; see the docstring
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # scaled to 8 bits before use
_BLOCK_VALUES = 1 << 19  # samples per block when scaling deep images (4 MB as float64)
# what PIL may decode here (MPO: a phone camera's JPEG holding more pictures; the first is read)
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "TIFF", "BMP", "WEBP", "GIF")
JPEG_FORMATS = ("JPEG", "MPO")
# a progressive JPEG refines its picture in scans, about ten in practice; libjpeg decodes any
# number, and a 1.4 MB file of 14,000 scans took 34 s of a core (a reviewer's "scan bomb")
MAX_JPEG_SCANS = 100
READABLE = "JPEG, PNG, TIFF, BMP, WebP or FITS"  # what uploads and messages name (GIF: unasked)


class ImageError(ValueError):
    """An image that cannot be used, with a message fit to show a user."""


def open_image(source, name: str | None = None) -> Image.Image:
    """Open ``source`` (a path, bytes, or binary file object) as a decoded-on-demand RGB image.
    FITS files (and ``fits.BandSet`` triplets) become the colour picture ``galaxy_core.fits``
    makes of them, with the centre's RA/Dec in ``image.info["radec"]`` where known, and its
    pixels without data in ``image.info[fits.NO_DATA_KEY]`` (``FitsPicture.no_data``)."""
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "upload")
    if is_fits(source):
        try:
            picture = _read_fits_once(source, label)
        except FitsError as exc:
            raise ImageError(str(exc)) from exc
        image = Image.fromarray(picture.rgb)
        image.info.update(radec=picture.centre, notes=list(picture.notes))
        image.info[NO_DATA_KEY] = picture.no_data
        return image
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
                raise ImageError(f"{label}: format {image.format} is not supported; use "
                                 f"{READABLE}")
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{label}: {image.width}x{image.height} pixels is over the "
                                 f"{MAX_PIXELS // 1_000_000} megapixel limit")
            scans = _jpeg_scans(source) if image.format in JPEG_FORMATS else 0
            if scans > MAX_JPEG_SCANS:
                raise ImageError(f"{label}: a JPEG of {scans} scans, over the {MAX_JPEG_SCANS} "
                                 f"a camera or editor writes (a decoding bomb?)")
            if decoded_bytes(image) > MAX_DECODED_BYTES:
                raise ImageError(f"{label}: {image.width}x{image.height} pixels in mode "
                                 f"{image.mode} decode to {decoded_bytes(image) / 1e6:.0f} MB, "
                                 f"over the {MAX_DECODED_BYTES // 1_000_000} MB limit (e.g. "
                                 f"{MAX_PIXELS // 1_000_000} megapixels of 8-bit RGB)")
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{label}: not an image in any format this app reads ({READABLE}), "
                         f"or the file is damaged") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: too many pixels to decode safely (over "
                         f"{MAX_PIXELS // 1_000_000} megapixels)") from exc
    except OSError as exc:
        raise ImageError(f"{label}: cannot read the image ({exc})") from exc
    return image


def decoded_bytes(image: Image.Image) -> int:
    """Bytes of samples ``image`` decodes to, from its header: width x height x bands x bytes
    per sample (2 for 16-bit modes, 4 for 32-bit integer and float, else 1)."""
    if image.mode.startswith("I;16"):
        sample = 2
    elif image.mode in ("I", "F"):
        sample = 4
    else:
        sample = 1
    return image.width * image.height * len(image.getbands()) * sample


def _row_blocks(image: Image.Image):
    """(box, float64 samples) of ``image``, a block of rows at a time."""
    rows = max(1, _BLOCK_VALUES // image.width)
    for top in range(0, image.height, rows):
        box = (0, top, image.width, min(top + rows, image.height))
        yield box, np.asarray(image.crop(box), dtype=np.float64)


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit or float greyscale -> "L", its actual range scaled to 0..255 (not
    truncated), a block of rows at a time: a full-size float64 copy of a 40-megapixel image
    would cost 320 MB."""
    lo = hi = math.nan
    for _, block in _row_blocks(image):
        if not np.isnan(block).all():
            lo, hi = np.nanmin([lo, np.nanmin(block)]), np.nanmax([hi, np.nanmax(block)])
    out = Image.new("L", image.size)
    for box, block in _row_blocks(image):
        if hi > lo:  # (block - lo) / (hi - lo) * 255, in place
            np.divide(np.subtract(block, lo, out=block), hi - lo, out=block)
            np.multiply(block, 255.0, out=block)
        else:
            block[:] = 0
        out.paste(Image.fromarray(np.nan_to_num(block, copy=False).astype(np.uint8)), box[:2])
    return out


def _to_grey_or_rgb(image: Image.Image) -> Image.Image:
    """Any decoded mode -> "L" or "RGB". Grey stays grey (a third the memory of RGB) until
    after the resize; resizing grey then copying it to three channels gives the same pixels
    as the other way round."""
    if image.mode in DEEP_MODES:
        return _to_eight_bit(image)
    if image.mode in ("1", "L"):
        return image if image.mode == "L" else image.convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # transparent pixels become black sky, not white: pasted onto black through their alpha
        # (the same pixels as compositing over an opaque black image, without two more copies)
        if image.mode not in ("RGBA", "LA"):
            image = image.convert("RGBA")
        sky = Image.new("L" if image.mode == "LA" else "RGB", image.size)
        sky.paste(image, (0, 0), image)
        return sky
    return image if image.mode == "RGB" else image.convert("RGB")  # CMYK, YCbCr, palette


_FITS_PICTURES: "OrderedDict[str, object]" = OrderedDict()  # content hash -> FitsPicture
_FITS_PICTURES_KEPT = 8  # at most 8 x 12 MB (a 4-megapixel band's colour picture)
_FITS_LOCK = threading.Lock()


def _fits_key(source) -> str | None:
    """What a FITS source's picture is kept under: its bytes' hash, or a file's path, size and
    modification time (not its bytes: hashing would read the file a second time)."""
    if isinstance(source, BandSet):
        parts = [_fits_key(band) for band in (source.g, source.r, source.i)]
        return None if None in parts else "|".join(parts)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(source)).hexdigest()
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        found = os.stat(source)
        return f"{os.path.abspath(source)}:{found.st_size}:{found.st_mtime_ns}"
    return None


def _read_fits_once(source, label: str):
    """``read_fits``, kept for the last few files: a page decodes one upload several times
    (prediction, flags, picture, caption), and a 4-megapixel cube takes seconds each time."""
    key = _fits_key(source)
    with _FITS_LOCK:
        if key is not None and key in _FITS_PICTURES:
            _FITS_PICTURES.move_to_end(key)
            return _FITS_PICTURES[key]
    picture = read_fits(source, label, MAX_BYTES, MAX_DECODED_BYTES)
    if key is not None:
        with _FITS_LOCK:
            _FITS_PICTURES[key] = picture
            while len(_FITS_PICTURES) > _FITS_PICTURES_KEPT:
                _FITS_PICTURES.popitem(last=False)
    return picture


def _jpeg_scans(source) -> int:
    """How many scans (start-of-scan markers, FF DA) a JPEG holds. Inside its compressed data a
    0xFF byte is always followed by 0x00, so every FF DA is a marker."""
    if isinstance(source, io.BytesIO):
        return source.getvalue().count(b"\xff\xda")
    count, tail = 0, b""
    with open(source, "rb") as handle:
        while chunk := handle.read(1 << 20):
            count += (tail + chunk).count(b"\xff\xda")
            tail = chunk[-1:] if chunk[-1:] == b"\xff" else b""
    return count


def _decode(source, name: str | None, wanted: int | None = None) -> Image.Image:
    """Decode ``source`` to grey or RGB (deep images rescaled to 8 bits, transparency on black
    sky); a JPEG at the smallest DCT scale that keeps ``wanted`` px across (None: full size).
    Raises ``ImageError``."""
    image = open_image(source, name)
    try:
        if wanted is not None and image.format in JPEG_FORMATS:
            scale = max(1, min(8, min(image.size) // wanted))
            if scale > 1:
                image.draft("RGB", (math.ceil(image.width / scale),
                                    math.ceil(image.height / scale)))
        image.load()
        return _to_grey_or_rgb(image)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name or 'image'}: the image data is corrupt or truncated "
                         f"({exc})") from exc


def decoded_rgb(source, name: str | None = None) -> Image.Image:
    """The whole image in RGB as the model's preprocessing decodes it, for checks that judge
    what the model is shown. Raises ``ImageError``."""
    return _decode(source, name).convert("RGB")


def prepare(source, size: int, crop_fraction: float, name: str | None = None,
            framing=None) -> torch.Tensor:
    """Decode ``source`` and return its centre crop resized to uint8 (3, size, size).

    ``framing`` (a ``framing.FramingStats``): first frame the galaxy as the training images
    are (``galaxy_core.framing``); None: the image's own centre, as in training."""
    return _prepare(source, size, crop_fraction, name, framing)[0]


def prepare_framed(source, size: int, crop_fraction: float, name: str | None = None,
                   framing=None, frame=None):
    """``prepare`` and the ``framing.Frame`` it used (None without ``framing``). ``frame``: the
    frame another call chose for this image (its second value): that region, not a new choice
    (a JPEG is decoded at a scale that depends on ``size``, and two decodes of an image near a
    threshold could be framed differently)."""
    return _prepare(source, size, crop_fraction, name, framing, frame)[:2]


def prepare_views(source, size: int, crop_fraction: float, name: str | None = None,
                  framing=None, wide: bool = True):
    """``prepare_framed``, and the wider square half of the 8 test-time views see when
    ``wide`` and the frame asks for it (``Frame.wider``; else None): (image, frame, wide)."""
    return _prepare(source, size, crop_fraction, name, framing, want_wide=wide)


def _prepare(source, size, crop_fraction, name, framing, frame=None, want_wide=False):
    # a JPEG at the smallest DCT scale that still keeps >= size pixels across the crop
    image = _decode(source, name, wanted=math.ceil(size / crop_fraction))
    width, height = image.size
    chosen = None
    if frame is not None:
        chosen = frame.on(width)
    elif framing is not None:
        chosen = choose_frame(image, framing)
    if chosen is not None and chosen.moved:
        resized = crop(image.convert("RGB"), chosen.cx, chosen.cy, chosen.side * crop_fraction,
                       size)
    else:
        resized = centre_resize(image, size, crop_fraction).convert("RGB")
    wide = None
    if want_wide and chosen is not None and chosen.wider > 1:
        wide = _to_tensor(crop(image.convert("RGB"), chosen.cx, chosen.cy,
                               chosen.side * crop_fraction * chosen.wider, size))
    return _to_tensor(resized), chosen, wide


def centre_resize(image: Image.Image, size: int, crop_fraction: float) -> Image.Image:
    """The centre ``crop_fraction`` of the image's shorter side, resized to ``size`` px: the
    model's input where framing leaves the frame as it is."""
    side = max(1.0, min(image.size) * crop_fraction)
    left, top = (image.width - side) / 2, (image.height - side) / 2
    return image.resize((size, size), Image.Resampling.BILINEAR,
                        box=(left, top, left + side, top + side))


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image -> uint8 (3, H, W)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


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


def display_crop(source, preprocess: Preprocess, size: int = 320, name: str | None = None,
                 frame=None) -> np.ndarray:
    """The region the model sees, as an RGB uint8 (size, size, 3) array for display and overlays
    (``frame``: the one the model's input was cut with, from ``prepare_framed``; never chosen
    anew here, where a JPEG is decoded at another scale and could be framed otherwise)."""
    return prepare_framed(source, size, preprocess.crop_fraction, name,
                          frame=frame)[0].permute(1, 2, 0).numpy()


UPLOAD_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp") + FITS_EXTENSIONS


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
