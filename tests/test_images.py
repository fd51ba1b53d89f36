import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from galaxy_core.config import Preprocess
from galaxy_core.images import (MAX_BYTES, MAX_DECODED_BYTES, MAX_PIXELS, ImageError,
                                 decoded_bytes, normalize, open_image, prepare)
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


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_semi_transparent_pixels_are_composited_over_black(mode):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)).convert(mode)
    black = Image.new("RGBA", image.size, (0, 0, 0, 255))
    expected = Image.alpha_composite(black, image.convert("RGBA")).convert("RGB")
    out = prepare(encode(image), 40, 1.0)  # same size: the resize keeps every pixel
    np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), np.asarray(expected))


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
    (b"this is not an image at all", "not an image in any format this app reads"),
    (b"%PDF-1.4 fake", "not an image in any format this app reads"),
])
def test_garbage_is_refused_clearly(data, message):
    with pytest.raises(ImageError, match=message):
        prepare(data, 32, 1.0, name="upload.jpg")


def test_truncated_jpeg_is_refused():
    data = encode(galaxy_image(5, size=200), "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated|not a readable"):
        prepare(data[: len(data) // 3], 32, 1.0)


def _png_header_only(width, height, bit_depth=8, colour_type=2):
    """A PNG that declares ``width`` x ``height`` pixels (colour type 0 grey, 2 RGB, 6 RGBA)
    and holds no pixel data: a few dozen bytes whatever the size."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError, match="megapixel|not a readable"):
        open_image(_png_header_only(30000, 30000))


def test_over_forty_megapixels_is_refused_by_our_limit():
    # 41.6 MP: under Pillow's own bomb threshold (89 MP), and 1-bit, so only 42 MB decoded:
    # nothing but MAX_PIXELS refuses it
    data = _png_header_only(6500, 6400, bit_depth=1, colour_type=0)
    assert 6500 * 6400 > MAX_PIXELS
    with pytest.raises(ImageError, match=r"6500x6400 pixels is over the 40 megapixel limit"):
        open_image(data, name="big.png")


def test_upload_over_the_byte_limit_is_refused_before_decoding():
    data = _png_header_only(100, 100) + b"\0" * (MAX_BYTES - 20)
    assert len(data) > MAX_BYTES
    with pytest.raises(ImageError, match=r"upload.png: 26.2 MB is over the 25 MB limit"):
        open_image(data, name="upload.png")
    open_image(data[:MAX_BYTES], name="upload.png")  # at the limit: allowed


def test_decoded_size_over_the_budget_is_refused_from_the_header():
    # 31.2 MP of 8-bit RGBA: under the pixel limit, but 125 MB of samples
    data = _png_header_only(6000, 5200, colour_type=6)
    with pytest.raises(ImageError, match=r"mode RGBA decode to 125 MB, over the 120 MB limit"):
        open_image(data, name="wide.png")
    # 39.6 MP of 16-bit grey is 79 MB decoded: allowed
    image = open_image(_png_header_only(7000, 5657, bit_depth=16, colour_type=0))
    assert image.mode == "I;16" and decoded_bytes(image) == 7000 * 5657 * 2
    assert decoded_bytes(image) < MAX_DECODED_BYTES


def test_large_sixteen_bit_image_decodes_without_full_size_copies(tmp_path):
    width, height = 4000, 4000  # 16 MP, 32 MB of 16-bit samples
    ramp = np.linspace(0, 65535, width).astype(np.uint16)
    path = tmp_path / "big16.png"
    Image.fromarray(np.broadcast_to(ramp, (height, width)).copy()).save(path, compress_level=1)
    tracemalloc.start()
    try:
        out = prepare(str(path), 64, 1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # a full-size copy as float64 (8 bytes a pixel), float32 (4) or uint16 (2) is far above;
    # the scaling works a block of rows at a time
    assert peak < width * height, f"decoding traced {peak / 1e6:.0f} MB"
    assert out[:, :, 0].float().mean() < 10 and out[:, :, -1].float().mean() > 245


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="no such image file"):
        prepare(str(tmp_path / "nope.jpg"), 32, 1.0)


def test_normalize_uses_imagenet_statistics():
    p = Preprocess(image_size=16)
    grey = torch.full((1, 3, 16, 16), 128, dtype=torch.uint8)
    out = normalize(grey, p)
    expected = (128 / 255 - torch.tensor(p.mean)) / torch.tensor(p.std)
    torch.testing.assert_close(out[0, :, 0, 0], expected.float())


def test_a_jpeg_of_more_scans_than_any_camera_writes_is_refused_before_decoding():
    """A reviewer's 1.4 MB progressive JPEG of 14,000 scans held a core for 34 s."""
    data = encode(galaxy_image(0), "JPEG", progressive=True)
    assert open_image(data, "fine.jpg").size == (64, 64)
    bomb = data[:-2] + b"\xff\xda" * 200 + data[-2:]
    with pytest.raises(ImageError, match="a JPEG of 2.. scans"):
        open_image(bomb, "bomb.jpg")


def test_a_phone_cameras_multi_picture_jpeg_is_read():
    """MPO (a JPEG holding more pictures) was refused as an unsupported format."""
    first, second = galaxy_image(0), Image.new("RGB", (64, 64), (9, 9, 9))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    image = open_image(buffer.getvalue(), "phone.jpg")
    assert image.format == "MPO"
    assert prepare(buffer.getvalue(), 32, 0.5).shape == (3, 32, 32)
