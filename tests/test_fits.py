"""FITS input: one band, a g, r, i cube or three band files become a Kaggle-like colour picture;
WCS gives the centre's RA/Dec; hostile or damaged files get one clear message."""

import io
import os
import warnings

import numpy as np
import pytest
from astropy.io import fits

from galaxy_core.fits import (BandSet, group_band_files, lupton_rgb, read_fits, sky_and_noise)
from galaxy_core.images import ImageError, open_image, prepare, upload_problem


def galaxy_bands(size=96, seed=0):
    """g, r, i planes of a red-ish elliptical galaxy on sky with noise, in flux units."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] - (size - 1) / 2
    profile = np.exp(-np.hypot(x / 9, y / 6))
    planes = []
    for flux, sky in ((40.0, 1.0), (70.0, 1.5), (100.0, 2.0)):  # g, r, i: brighter in i
        planes.append(sky + flux * profile + rng.normal(0, 0.5, profile.shape))
    return np.stack(planes).astype(np.float32)


def fits_bytes(data, header=None) -> bytes:
    buffer = io.BytesIO()
    fits.PrimaryHDU(data=data, header=header).writeto(buffer)
    return buffer.getvalue()


def wcs_header(size):
    header = fits.Header()
    header.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=202.4696, CRVAL2=47.1952,
                  CRPIX1=(size + 1) / 2, CRPIX2=(size + 1) / 2, CDELT1=-0.396 / 3600,
                  CDELT2=0.396 / 3600, CUNIT1="deg", CUNIT2="deg")
    return header


def test_a_gri_cube_looks_like_a_kaggle_cutout():
    picture = read_fits(fits_bytes(galaxy_bands()), "cube.fits")
    rgb = picture.rgb.astype(np.float32)
    assert picture.rgb.shape == (96, 96, 3) and picture.rgb.dtype == np.uint8
    border = np.concatenate([rgb[:8].reshape(-1, 3), rgb[-8:].reshape(-1, 3)])
    assert np.all(np.abs(np.median(border, axis=0) - 4) <= 2)  # the cut-outs' sky (4, 4, 2)
    assert 1.5 <= np.median(np.std(border, axis=0)) <= 4.5  # their sky noise (about 3)
    assert 150 <= np.percentile(rgb.max(axis=2), 99.9) <= 230  # bright, not saturated
    core = rgb[44:52, 44:52].reshape(-1, 3).mean(axis=0)
    assert core[0] > core[1] > core[2]  # i as red, r as green, g as blue: a red galaxy
    assert picture.centre is None
    assert picture.notes == ["its planes 1, 2 and 3 read as the g, r and i bands"]


def test_the_mapping_is_astropys_make_lupton_rgb():
    from astropy.visualization import make_lupton_rgb
    rng = np.random.default_rng(1)
    r, g, b = (rng.gamma(1.0, 20.0, (32, 32)) for _ in range(3))
    ours = lupton_rgb(r, g, b, [1.0, 1.0, 1.0], stretch=15.0, Q=6.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy deprecates `minimum` in favour of intervals
        theirs = make_lupton_rgb(r, g, b, minimum=1.0, stretch=15.0, Q=6.0)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_one_band_is_grey_and_wcs_gives_the_centre():
    data = galaxy_bands()[2]
    picture = read_fits(fits_bytes(data, wcs_header(96)), "m51_i.fits")
    assert np.array_equal(picture.rgb[..., 0], picture.rgb[..., 2])
    assert "one band" in picture.notes[0]
    ra, dec = picture.centre
    assert ra == pytest.approx(202.4696, abs=1e-4) and dec == pytest.approx(47.1952, abs=1e-4)
    image = open_image(fits_bytes(data, wcs_header(96)), "m51_i.fits")
    assert image.info["radec"] == picture.centre
    assert prepare(fits_bytes(data), 32, 0.5, "m51_i.fits").shape == (3, 32, 32)


def test_nans_and_a_blank_band_are_handled():
    bands = galaxy_bands()
    bands[:, :10, :10] = np.nan  # a masked corner
    bands[0] = np.nan  # no g at all
    picture = read_fits(fits_bytes(bands), "masked.fits")
    assert "the g band is blank" in picture.notes[0]
    assert np.isfinite(picture.rgb).all() and picture.rgb[:10, :10].max() <= 20  # sky-dark
    assert sky_and_noise(np.full((4, 4), np.nan)) == (0.0, 0.0)
    with pytest.raises(ImageError, match="every band is blank"):
        open_image(fits_bytes(np.zeros((3, 16, 16), np.float32)), "empty.fits")


def test_missing_pixels_inside_the_galaxy_are_filled_from_around_them_and_said():
    """A NaN in a galaxy's core (a masked star, a saturated pixel) was drawn as a black dot, so
    the model saw a hole in the galaxy; now it is filled from its neighbours, and the notes say
    how many pixels were filled, and how many at the edge became sky."""
    bands = galaxy_bands()
    whole = read_fits(fits_bytes(bands), "whole.fits")
    assert whole.notes == ["its planes 1, 2 and 3 read as the g, r and i bands"]
    middle = bands.shape[1] // 2
    bands[:, middle - 1:middle + 2, middle - 1:middle + 2] = np.nan  # 9 pixels in the core
    bands[1, 0, :5] = np.nan  # 5 at the edge, one band
    picture = read_fits(fits_bytes(bands), "holes.fits")
    core = picture.rgb[middle - 1:middle + 2, middle - 1:middle + 2].astype(int)
    assert np.abs(core - whole.rgb[middle - 1:middle + 2, middle - 1:middle + 2]).max() <= 40
    assert core[..., 0].min() > 100  # bright like the core around it, not sky-dark
    assert "9 pixel(s) without data (NaN) inside the image were filled" in " ".join(picture.notes)
    assert "5 pixel(s) without data (NaN) are shown as sky (at the edge" in \
        " ".join(picture.notes)


def test_a_masked_strip_across_the_galaxy_is_flagged_a_masked_star_is_not():
    """Filled-in pixels are no galaxy: a cube with a strip of NaN across its middle keeps its
    prediction but is flagged (its verdict hedged, no intervals), as the model judges the fill;
    a few masked pixels (a star, a bad pixel) are filled and not flagged, nor is a masked band
    outside the centre the model sees (it crops the centre half of the frame)."""
    from galaxy_core.framing import shipped_stats
    from galaxy_core.images import decoded_rgb
    from galaxy_core.quality import MAX_NO_DATA, flags_as_seen, shipped_ranges

    def flag_codes(bands, frame_it=True, crop_fraction=0.5):
        image = decoded_rgb(fits_bytes(bands), "cube.fits")
        found = flags_as_seen(image, shipped_ranges(), shipped_stats() if frame_it else None,
                              crop_fraction=crop_fraction)
        return {f.code: f.message for f in found}

    bands = galaxy_bands()
    assert "no_data" not in flag_codes(bands)
    middle = bands.shape[1] // 2
    star = bands.copy()
    star[:, middle + 10:middle + 13, middle - 20:middle - 17] = np.nan  # a masked star: 9 px
    assert "no_data" not in flag_codes(star)
    strip = bands.copy()
    strip[:, middle - 5:middle + 5, 18:78] = np.nan  # across the core: 480 of the 48^2 seen
    for frame_it in (True, False):
        message = flag_codes(strip, frame_it)["no_data"]
        assert message.startswith("21% of the region the model sees had no data (NaN in the FITS")
    assert 9 / 48 ** 2 < MAX_NO_DATA < 480 / 48 ** 2
    edge = bands.copy()
    edge[:, 2:20, 10:86] = np.nan  # 15% of the image, all outside the centre half
    assert "no_data" not in flag_codes(edge, frame_it=False)
    assert "no_data" in flag_codes(edge, frame_it=False, crop_fraction=1.0)


def test_an_upload_naming_its_own_metadata_like_the_mask_is_not_believed(tmp_path):
    """A PNG's text chunks land in the decoded image's info: one named as the FITS mask's key
    must neither crash the checks nor flag the image."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from galaxy_core.fits import NO_DATA_KEY
    from galaxy_core.images import decoded_rgb
    from galaxy_core.quality import flags_as_seen, shipped_ranges
    from tests.test_framing import kaggle_like
    metadata = PngInfo()
    metadata.add_text(NO_DATA_KEY, "1")
    metadata.add_text("no_data", "1")
    path = tmp_path / "chunky.png"
    kaggle_like(0.0774).save(path, pnginfo=metadata)
    image = decoded_rgb(str(path))
    assert image.info[NO_DATA_KEY] == "1"  # Pillow keeps it: the check must not trust it
    assert flags_as_seen(image, shipped_ranges(), crop_fraction=0.5) == []


def test_three_band_files_of_one_galaxy_are_combined(tmp_path):
    bands = galaxy_bands()
    paths = []
    for band, plane in zip("gri", bands):
        header = fits.Header()
        header["FILTER"] = band
        path = tmp_path / f"ngc{band}.fits"  # no band in the name: the header says it
        path.write_bytes(fits_bytes(plane, header))
        paths.append(str(path))
    combined = read_fits(BandSet(*paths), "ngc")
    cube = read_fits(fits_bytes(bands), "cube")
    assert np.array_equal(combined.rgb, cube.rgb)
    names = ["a/m51_g.fits", "a/m51_r.fits", "a/m51_i.fits", "a/other.jpg", "a/m82_g.fits"]
    assert group_band_files(names) == ([("m51", (0, 1, 2))], [3, 4])


def test_the_predict_cli_reads_fits_and_band_triplets(tmp_path, capsys):
    from train.predict import main
    folder = tmp_path / "fits"
    folder.mkdir()
    bands = galaxy_bands(seed=3)
    (folder / "cube.fits").write_bytes(fits_bytes(bands))
    for band, plane in zip("gri", bands):
        (folder / f"m51_{band}.fits").write_bytes(fits_bytes(plane))
    out = tmp_path / "out.csv"
    assert main(["--images", str(folder), "--out", str(out), "--no-tta"]) == 0
    import pandas as pd
    frame = pd.read_csv(out)
    assert sorted(frame["GalaxyID"].astype(str)) == ["cube", "m51"]
    row = frame.set_index(frame["GalaxyID"].astype(str))
    np.testing.assert_allclose(row.loc["cube"].iloc[1:].to_numpy(float),
                               row.loc["m51"].iloc[1:].to_numpy(float), atol=1e-6)


def huge_header() -> bytes:
    """A 5.8 kB file whose header promises 40000 x 40000 float32 pixels."""
    header = fits.Header([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2), ("NAXIS1", 40000),
                          ("NAXIS2", 40000)])
    return header.tostring().encode() + b"\0" * 2880


@pytest.mark.parametrize("make, message", [
    # the header promises 40000 x 40000 float32 pixels: refused before any is read
    (lambda: huge_header(), "40000 x 40000 pixels a band, over the 4 megapixels read"),
    (lambda: fits_bytes(galaxy_bands())[:2880 + 1000], "truncated or damaged"),
    (lambda: fits_bytes(np.zeros((5, 8, 8), np.float32)), "a cube of 5 planes"),
    (lambda: b"SIMPLE  = garbage" + b"\x00" * 3000, "not a readable FITS image"),
    (lambda: fits_bytes(np.zeros(16, np.float32)), "no 2-D image"),
])
def test_hostile_or_damaged_fits_get_one_clear_message(make, message):
    with pytest.raises(ImageError, match=message):
        open_image(make(), "hostile.fits")


def test_a_tile_compressed_fz_file_reads_like_the_plain_one():
    data = galaxy_bands()[1]
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data=data, compression_type="GZIP_1")]
                 ).writeto(buffer)  # quantised floats, as .fz survey files are
    compressed = read_fits(buffer.getvalue(), "m51_r.fz").rgb.astype(int)
    plain = read_fits(fits_bytes(data), "m51_r.fits").rgb.astype(int)
    assert np.mean(np.abs(compressed - plain) <= 1) > 0.99


def test_fits_uploads_are_accepted():
    for name in ("m51.fits", "m51.FIT", "cube.fts", "tile.fz"):
        assert upload_problem(name, 1000) is None


def raw_fits(cards, data=b"") -> bytes:
    """A FITS file written card by card, as a hostile one would be (astropy refuses to)."""
    header = b"".join(card.ljust(80).encode() for card in cards + ["END"])
    header = header.ljust(-(-len(header) // 2880) * 2880)
    return header + data.ljust(-(-len(data) // 2880) * 2880, b"\0")


@pytest.mark.parametrize("cards, message", [
    # astropy looped over a billion axes, and read the same HDU forever for a negative length
    (["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 999999999"], "NAXIS = 999999999"),
    (["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 2", "NAXIS1  = -64", "NAXIS2  = 64"],
     "NAXIS1 = -64"),
    # a header of megabytes took 13 s to parse at every decode
    (["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 0"] + ["COMMENT " + "x" * 70] * 4000,
     "header runs past"),
])
def test_a_hostile_header_is_refused_before_astropy_reads_it(cards, message, tmp_path):
    """In a process of its own, with a deadline: astropy spent minutes on these, or forever."""
    import subprocess
    import sys
    path = tmp_path / "hostile.fits"
    path.write_bytes(raw_fits(cards))
    script = ("import sys; from galaxy_core.images import ImageError, open_image\n"
              "try:\n    open_image(sys.argv[1], 'hostile.fits')\n"
              "except ImageError as exc:\n    print(exc)\n")
    try:
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                              text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(
                                  os.path.abspath(__file__))))
    except subprocess.TimeoutExpired:
        pytest.fail("the header was still being read after 60 s")
    assert done.returncode == 0, done.stderr[-2000:]
    assert message in done.stdout, done.stdout


def test_a_small_compressed_file_declaring_a_survey_tile_is_refused_unread():
    """135 KB of tile-compressed constant pixels declared 10,950^2 and took 16 GB to colour."""
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        np.zeros((2100, 2100), np.uint8), compression_type="GZIP_1")]).writeto(buffer)
    assert len(buffer.getvalue()) < 200_000
    with pytest.raises(ImageError, match="over the 4 megapixels read; cut out the galaxy"):
        open_image(buffer.getvalue(), "tile.fz")


def test_extreme_pixel_values_give_a_picture_or_one_message_never_a_crash():
    """3e38 in a field of zeros made the stretch divide by zero: a traceback on the page."""
    data = np.zeros((64, 64), np.float32)
    data[30:33, 30:33] = 3e38
    image = open_image(fits_bytes(data), "extreme.fits")
    assert np.asarray(image).shape == (64, 64, 3)


def test_a_wcs_with_a_huge_distortion_order_costs_nothing():
    """SIP keywords declaring order 8,000 took 125 s: only the centre is wanted, which they do
    not move, so they are not read."""
    import time
    header = fits.Header()
    for key, value in [("CTYPE1", "RA---TAN-SIP"), ("CTYPE2", "DEC--TAN-SIP"),
                       ("CRPIX1", 32.5), ("CRPIX2", 32.5), ("CRVAL1", 150.1), ("CRVAL2", 2.2),
                       ("CDELT1", -1e-4), ("CDELT2", 1e-4), ("A_ORDER", 8000),
                       ("B_ORDER", 8000), ("A_2_0", 1e-9), ("B_0_2", 1e-9)]:
        header[key] = value
    started = time.perf_counter()
    picture = read_fits(fits_bytes(galaxy_bands(64)[2], header), "sip.fits")
    assert time.perf_counter() - started < 10  # seconds: it took minutes
    assert picture.centre == pytest.approx((150.1, 2.2), abs=1e-3)


def test_a_page_decoding_one_upload_again_reuses_its_picture(monkeypatch):
    """Classify decoded a FITS upload four times (prediction, flags, picture, caption)."""
    import galaxy_core.images as images
    calls = []
    real = images.read_fits
    monkeypatch.setattr(images, "read_fits", lambda *a, **k: calls.append(1) or real(*a, **k))
    data = fits_bytes(galaxy_bands(72, seed=5))
    first = np.asarray(open_image(data, "a.fits"))
    again = np.asarray(open_image(data, "b.fits"))
    assert len(calls) == 1 and np.array_equal(first, again)
    open_image(fits_bytes(galaxy_bands(72, seed=6)), "c.fits")  # other bytes: read
    assert len(calls) == 2


def test_a_fits_file_is_read_once_until_it_changes(monkeypatch, tmp_path):
    """A path is kept by its size and time, not hashed (that read it twice); a rewritten file
    is read again."""
    import galaxy_core.images as images
    calls = []
    real = images.read_fits
    monkeypatch.setattr(images, "read_fits", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = tmp_path / "m51.fits"
    path.write_bytes(fits_bytes(galaxy_bands(72, seed=7)))
    open_image(str(path))
    open_image(str(path))
    assert len(calls) == 1
    path.write_bytes(fits_bytes(galaxy_bands(80, seed=8)))  # another size
    assert open_image(str(path)).size == (80, 80) and len(calls) == 2
