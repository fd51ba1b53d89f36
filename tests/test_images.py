import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from galaxy_core.config import Preprocess
from galaxy_core.images import ImageError, normalize, open_image, prepare
from tests.conftest import galaxy_image


def encode(image, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "CMYK", "I;16", "LA", "1"])
def test_every_colour_mode_becomes_rgb_uint8(mode):
    base = galaxy_image(1, size=80)
    if mode == "I;16":
        array = (np.asarray(base.convert("L"), dtype=np.uint16) * 257)
        image = Image.fromarray(array)
    else:
        image = base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    out = prepare(encode(image, fmt), 32, 0.5)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert out.float().std() > 1  # a picture, not a flat field


def test_sixteen_bit_range_is_scaled_not_truncated():
    ramp = np.tile(np.linspace(1000, 3000, 64, dtype=np.uint16), (64, 1))
    out = prepare(encode(Image.fromarray(ramp), "TIFF"), 64, 1.0)
    assert out.max() > 240 and out.min() < 15


def test_transparent_pixels_become_black_sky():
    image = Image.new("RGBA", (40, 40), (255, 255, 255, 0))
    assert prepare(encode(image), 16, 1.0).max() == 0


def test_centre_crop_and_jpeg_draft_keep_the_size():
    data = encode(galaxy_image(3, size=424), "JPEG", quality=90)
    for size, crop in [(96, 0.5), (224, 1.0), (64, 0.25)]:
        assert prepare(data, size, crop).shape == (3, size, size)


def test_prepare_is_deterministic_for_path_and_bytes(tmp_path):
    path = tmp_path / "g.jpg"
    galaxy_image(4, size=200).save(path)
    assert torch.equal(prepare(str(path), 48, 0.5), prepare(path.read_bytes(), 48, 0.5))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is not an image at all", "not a readable image"),
    (b"%PDF-1.4 fake", "not a readable image"),
])
def test_garbage_is_refused_clearly(data, message):
    with pytest.raises(ImageError, match=message):
        prepare(data, 32, 1.0, name="upload.jpg")


def test_truncated_jpeg_is_refused():
    data = encode(galaxy_image(5, size=200), "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated|not a readable"):
        prepare(data[: len(data) // 3], 32, 1.0)


def _png_header_only(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError, match="megapixel|not a readable"):
        open_image(_png_header_only(30000, 30000))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="no such image file"):
        prepare(str(tmp_path / "nope.jpg"), 32, 1.0)


def test_normalize_uses_imagenet_statistics():
    p = Preprocess(image_size=16)
    grey = torch.full((1, 3, 16, 16), 128, dtype=torch.uint8)
    out = normalize(grey, p)
    expected = (128 / 255 - torch.tensor(p.mean)) / torch.tensor(p.std)
    torch.testing.assert_close(out[0, :, 0, 0], expected.float())
