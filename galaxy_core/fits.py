"""FITS images, as astronomers have them, turned into the colour picture the model learned from.

The model learned from SDSS colour cut-outs: the i, r and g bands shown as red, green and blue
through the asinh stretch of Lupton et al. (2004, PASP 116, 133). A FITS upload becomes such a
picture:
- a single-band image (2-D) is shown in grey (the same band in all three colours);
- a 3-plane cube is read as g, r, i (planes 0, 1, 2), as SDSS and DECaLS cut-outs are stacked;
- three single-band files of one galaxy (``m51_g.fits``, ``m51_r.fits``, ``m51_i.fits``, or any
  names whose ``FILTER`` header says g, r and i) are combined into one picture (``BandSet``).

The stretch is set from the image itself so that it looks like the Kaggle cut-outs: each band's
sky (median) and noise (scaled median absolute deviation) are measured; the sky is put at the
cut-outs' sky level (about 4 of 255) and one noise sigma at about 3 of 255, as measured on 300
of the Kaggle images; ``Q`` is chosen so the brightest 0.1% of the galaxy reaches about 190 of
255, the cut-outs' median. Fluxes keep their ratios between bands (one stretch for all), so
colours stay physical. Missing pixels (NaN) enclosed by data, such as a masked star or a
saturated core, are filled from the pixels around them (OpenCV's Telea inpainting); missing
areas that reach the edge of the image are sky; either is said in the picture's notes. A blank
band (all zero or NaN) is replaced by the mean of the others and said so.

Every header is checked before any data is read: the decoded size of the data is bounded as for
other images, and a file whose header promises more data than it holds is refused, not read.
The centre's RA/Dec comes from the WCS where the header has one.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np

FITS_EXTENSIONS = (".fits", ".fit", ".fts", ".fz")
MAGIC = b"SIMPLE  ="
BANDS = ("g", "r", "i")
SKY_LEVEL = 4.0  # the Kaggle cut-outs' sky, of 255 (median over 300 images: 4, 4, 2)
NOISE_LEVEL = 3.0  # one sky sigma, of 255 (median over 300 images: 3, 3, 3)
BRIGHT_LEVEL = 190.0 / 255.0  # the brightest 0.1% of pixels (median over 300 images: 194, 159, 125)
# what is read of a FITS file, whatever its header says: a galaxy cut-out, not a survey tile.
# A 135 KB tile-compressed file declaring 10,950^2 pixels took 16 GB to colour (a reviewer's).
MAX_FITS_PIXELS = 2048 * 2048  # per band: an SDSS frame (2048 x 1489) fits; a survey tile does not
# missing pixels filled from around them at most (Telea's cost grows with them: a file blank
# everywhere but a 2 px frame took 69 s); more are shown as sky
MAX_INPAINTED = 50_000
MAX_HDUS = 16  # header-data units looked at for an image (a file can list the same one forever)
MAX_AXES = 4  # NAXIS: a 2-D image, a cube, and degenerate axes of length 1
MAX_HEADER_BYTES = 2880 * 100  # the primary header's 36 cards a block; real ones hold a few
# WCS distortion keywords: only the centre's RA/Dec is wanted, which they barely move, and a
# declared polynomial order of thousands took minutes to read
_DISTORTION = re.compile(r"^(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+)$|^(CPDIS|CQDIS|D2IMDIS|DP|DQ)\d")
_BAND_IN_NAME = re.compile(r"^(?P<stem>.+?)[_\-.](?P<band>[gri])$", re.I)


class FitsError(ValueError):
    """A FITS file that cannot be used, with a message fit to show a user."""


@dataclass(frozen=True)
class BandSet:
    """Three single-band sources (paths or bytes) of one galaxy, in g, r, i order."""

    g: object
    r: object
    i: object
    names: tuple[str, str, str] = ("g", "r", "i")


@dataclass
class FitsPicture:
    rgb: np.ndarray  # (H, W, 3) uint8
    centre: tuple[float, float] | None  # RA, Dec in degrees, where the header has a WCS
    notes: list[str] = field(default_factory=list)
    # (H, W) bool: pixels without data (NaN) in some band, filled in; None when there are none
    no_data: np.ndarray | None = None


# where ``images.open_image`` keeps a picture's ``no_data`` in the image's ``info`` (an upload's
# own metadata, such as a PNG's text chunks, can use any name: readers believe a bool array only)
NO_DATA_KEY = "galaxy_core.no_data"


def is_fits(source) -> bool:
    """True when ``source`` (a path, bytes or a ``BandSet``) is FITS, judged by its first bytes."""
    if isinstance(source, BandSet):
        return True
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:len(MAGIC)]) == MAGIC
    if isinstance(source, (str, os.PathLike)) and os.path.isfile(source):
        with open(source, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    return False


def _read_bytes(source, label: str, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        if not os.path.isfile(source):
            raise FitsError(f"{label}: no such file")
        if os.path.getsize(source) > max_bytes:
            raise FitsError(f"{label}: {os.path.getsize(source) / 1e6:.1f} MB is over the "
                            f"{max_bytes // (1024 * 1024)} MB limit")
        with open(source, "rb") as handle:
            data = handle.read()
    if len(data) > max_bytes:
        raise FitsError(f"{label}: {len(data) / 1e6:.1f} MB is over the "
                        f"{max_bytes // (1024 * 1024)} MB limit")
    return data


def _image_hdu(hdus, label: str, max_decoded: int, size: int):
    """The first HDU holding a 2-D image or a 3-plane cube, checked from its header alone."""
    from astropy.io import fits
    for number, hdu in enumerate(hdus):
        if number >= MAX_HDUS:
            raise FitsError(f"{label}: no 2-D image or 3-plane cube in its first {MAX_HDUS} "
                            f"header-data units")
        header = hdu.header
        # a tile-compressed HDU shows the image's own header; its data are decompressed on read
        compressed = isinstance(hdu, fits.CompImageHDU)
        naxis = int(header.get("NAXIS", 0))
        if not 0 <= naxis <= MAX_AXES:
            raise FitsError(f"{label}: NAXIS = {naxis}; this app reads 2-D images and 3-plane "
                            f"cubes")
        axes = [int(header.get(f"NAXIS{k}", 0)) for k in range(1, naxis + 1)]
        if any(a < 0 for a in axes):
            raise FitsError(f"{label}: an axis of negative length in its header (damaged)")
        axes = [a for a in axes if a != 1] if len(axes) > 2 else axes  # degenerate axes
        if len(axes) not in (2, 3) or min(axes, default=0) <= 0:
            continue
        if axes[0] * axes[1] > MAX_FITS_PIXELS:
            raise FitsError(f"{label}: {axes[0]} x {axes[1]} pixels a band, over the "
                            f"{MAX_FITS_PIXELS // 1_000_000} megapixels read; cut out the "
                            f"galaxy first")
        if len(axes) == 3 and axes[2] != 3:
            raise FitsError(f"{label}: a cube of {axes[2]} planes; this app reads one band or "
                            f"three (g, r, i)")
        bitpix = abs(int(header.get("BITPIX", 0)))
        decoded = int(np.prod(axes)) * max(bitpix // 8, 1)
        if decoded > max_decoded:
            raise FitsError(f"{label}: {' x '.join(map(str, axes))} pixels decode to "
                            f"{decoded / 1e6:.0f} MB, over the {max_decoded // 1_000_000} MB "
                            f"limit")
        if not compressed and decoded > size:
            raise FitsError(f"{label}: the header promises {_amount(decoded)} of pixels but "
                            f"the file holds {_amount(size)} (truncated or damaged)")
        return hdu
    raise FitsError(f"{label}: holds no 2-D image or 3-plane cube")


def _amount(size: int) -> str:
    """Bytes as a person reads them: "1,234 bytes" or "12.3 MB" (not "0.0 MB")."""
    return f"{size:,} bytes" if size < 1_000_000 else f"{size / 1e6:.1f} MB"


def read_planes(source, label: str, max_bytes: int, max_decoded: int):
    """(planes (n, H, W) float32 with NaN where unknown, header) of one FITS source."""
    from astropy.io import fits  # the field's own library; imported only for FITS files
    data = _read_bytes(source, label, max_bytes)
    if not data.startswith(MAGIC):
        raise FitsError(f"{label}: not a FITS file (it does not start with SIMPLE =)")
    if not _header_ends_within(data, MAX_HEADER_BYTES):
        if len(data) <= MAX_HEADER_BYTES:
            raise FitsError(f"{label}: not a readable FITS image (its header never ends: "
                            f"damaged or truncated)")
        raise FitsError(f"{label}: its header runs past {MAX_HEADER_BYTES // 1000} KB (real "
                        f"ones hold a few KB)")
    _check_axes_cards(data, label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's notes on non-standard headers
            with fits.open(io.BytesIO(data), memmap=False, lazy_load_hdus=True) as hdus:
                hdu = _image_hdu(hdus, label, max_decoded, len(data))
                planes = np.asarray(hdu.data, dtype=np.float32)
                header = hdu.header.copy()
    except FitsError:
        raise
    except Exception as exc:  # astropy raises many kinds on damaged files
        raise FitsError(f"{label}: not a readable FITS image (damaged or truncated)") from exc
    planes = np.squeeze(planes)
    if planes.ndim == 2:
        planes = planes[None]
    if planes.ndim != 3 or planes.shape[0] not in (1, 3):
        raise FitsError(f"{label}: image of shape {planes.shape}; this app reads one band or "
                        f"a 3-plane g, r, i cube")
    return planes, header


def _header_ends_within(data: bytes, limit: int) -> bool:
    """True when the primary header's END card lies in its first ``limit`` bytes."""
    for start in range(0, min(len(data), limit), 80):
        if data[start:start + 8] == b"END     ":
            return True
    return False


_AXIS_CARD = re.compile(rb"Z?NAXIS(\d{0,3}) *=")


def _check_axes_cards(data: bytes, label: str) -> None:
    """Refuse axis counts and lengths astropy would loop over for minutes (NAXIS = 999999999)
    or forever (a negative length), read from the raw cards of every header before astropy
    parses one. Cards start every 80 bytes from the file's start, as blocks are 2,880 bytes."""
    for match in _AXIS_CARD.finditer(data):
        if match.start() % 80:
            continue
        card = data[match.start():match.start() + 80]  # the value: columns 11-80, to a "/"
        try:
            value = int(card[10:].split(b"/")[0].strip())
        except ValueError:
            continue  # not a number: astropy refuses it, and the caller says so
        if (not match.group(1) and not 0 <= value <= MAX_AXES) or value < 0:
            keyword = match.group(0).split(b"=")[0].strip().decode("ascii")
            raise FitsError(f"{label}: its header declares {keyword} = {value}; this app reads "
                            f"2-D images and 3-plane cubes")


def band_of(name: str, header) -> str | None:
    """g, r or i from a ``FILTER``/``BAND`` header keyword, else from a ``_g``-style suffix."""
    for keyword in ("FILTER", "BAND", "FILTNAM"):
        value = str(header.get(keyword, "")).strip().lower()
        for band in BANDS:
            if value in (band, f"{band}'", f"sdss_{band}", f"sdss {band}", f"{band}band"):
                return band
    match = _BAND_IN_NAME.match(os.path.splitext(os.path.basename(name))[0])
    return match.group("band").lower() if match else None


def centre_radec(header, shape) -> tuple[float, float] | None:
    """RA, Dec (degrees) of the image centre from the header's WCS, or None."""
    try:
        from astropy.wcs import WCS
        plain = header.copy()
        for key in [k for k in plain.keys() if _DISTORTION.match(k)]:
            del plain[key]
        for key in ("CTYPE1", "CTYPE2"):
            if str(plain.get(key, "")).endswith("-SIP"):
                plain[key] = str(plain[key])[:-4]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(plain).celestial
            if not wcs.has_celestial:
                return None
            ra, dec = wcs.all_pix2world([[(shape[1] - 1) / 2, (shape[0] - 1) / 2]], 0)[0]
    except Exception:  # a malformed WCS is no reason to refuse the image
        return None
    if not (np.isfinite(ra) and np.isfinite(dec)):
        return None
    return float(ra) % 360.0, float(dec)


def sky_and_noise(plane: np.ndarray) -> tuple[float, float]:
    """The sky level (median) and noise (1.4826 x median absolute deviation) of a band,
    after one 3-sigma clip so a bright galaxy does not count as sky."""
    values = plane[np.isfinite(plane)]
    if values.size == 0:
        return 0.0, 0.0
    sky = float(np.median(values))
    noise = 1.4826 * float(np.median(np.abs(values - sky)))
    if noise > 0:
        kept = values[np.abs(values - sky) < 3 * noise]
        if kept.size:
            sky = float(np.median(kept))
            noise = 1.4826 * float(np.median(np.abs(kept - sky)))
    return sky, noise


def _slope(Q: float) -> float:
    """astropy's AsinhMapping slope: full scale reached at ``stretch`` x sinh(0.1 Q) / (0.1 Q)."""
    return 0.1 * 255.0 / np.arcsinh(0.1 * Q)


def _stretch_for(Q: float, gain: float) -> float:
    """The ``stretch`` at which faint signal maps to ``gain`` (of 255 per flux unit) with this
    ``Q``: near zero the mapping is linear with slope Q x _slope(Q) / stretch."""
    return Q * _slope(Q) / gain


def lupton_rgb(red, green, blue, minimum, stretch: float, Q: float) -> np.ndarray:
    """Lupton et al. (2004)'s asinh colour mapping, as ``astropy.visualization.make_lupton_rgb``
    (``minimum``, ``stretch``, ``Q``) computes it: one intensity for the three bands, so colours
    keep their ratios; saturated pixels are scaled down as a whole, not clipped per band."""
    bands = np.stack([red, green, blue]).astype(np.float64) - np.asarray(minimum,
                                                                          np.float64)[:, None, None]
    intensity = bands.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(intensity > 0, np.arcsinh(intensity * Q / stretch) * _slope(Q)
                         / intensity, 0.0)
    values = np.clip(bands * scale, 0.0, None)
    peak = values.max(axis=0)
    values = np.where(peak > 255.0, values * (255.0 / np.maximum(peak, 1e-12)), values)
    return np.moveaxis(values, 0, -1).round().clip(0, 255).astype(np.uint8)


def _choose_q(bands: np.ndarray, gain: float) -> float:
    """The Q at which the brightest 0.1% of pixels reach ``BRIGHT_LEVEL`` in their brightest
    colour, faint signal keeping ``gain`` (bisection: brightness falls as Q grows). Judged on
    the top 1% of pixels by intensity, whose 90th percentile is the image's 99.9th."""
    shifted = bands + SKY_LEVEL / gain  # minus the minimum, which puts the sky at SKY_LEVEL
    intensity = shifted.mean(axis=0).ravel()
    top = intensity >= np.percentile(intensity, 99.0)
    intensity = np.maximum(intensity[top], 1e-12)
    peak = shifted.max(axis=0).ravel()[top]

    def level(q):
        stretch = _stretch_for(q, gain)
        values = peak * np.arcsinh(q * intensity / stretch) * _slope(q) / intensity
        return np.percentile(values, 90) / 255.0

    low, high = 1e-3, 1e4
    if level(low) <= BRIGHT_LEVEL:  # a faint image: linear is bright enough already
        return low
    for _ in range(60):
        middle = (low * high) ** 0.5
        if level(middle) > BRIGHT_LEVEL:
            low = middle
        else:
            high = middle
    return (low * high) ** 0.5


def to_colour(planes: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """(H, W, 3) uint8 from (1 or 3, H, W) planes in g, r, i order, Kaggle-like (docstring), the
    notes on what was done, and the pixels without data (``FitsPicture.no_data``)."""
    notes = []
    planes = planes.astype(np.float32, copy=True)
    blank = [not np.isfinite(p).any() or np.nanmax(np.abs(p)) == 0 for p in planes]
    if all(blank):
        raise FitsError("every band is blank (all zero or NaN)")
    if planes.shape[0] == 3 and any(blank):
        good = [p for p, b in zip(planes, blank) if not b]
        for index, is_blank in enumerate(blank):
            if is_blank:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # pixels NaN in every band stay NaN (sky)
                    planes[index] = np.nanmean(np.stack(good), axis=0)
                notes.append(f"the {BANDS[index]} band is blank; the mean of the others "
                             f"stands in for it")
    stats = [sky_and_noise(p) for p in planes]
    planes = np.stack([p - sky for p, (sky, _) in zip(planes, stats)])
    no_data = ~np.isfinite(planes).all(axis=0)
    planes, filled, edge = _fill_missing(planes)
    if filled:
        notes.append(f"{filled} pixel(s) without data (NaN) inside the image were filled from "
                     f"the pixels around them")
    if edge:
        notes.append(f"{edge} pixel(s) without data (NaN) are shown as sky (at the edge of the "
                     f"image, or too many to fill)")
    noise = float(np.mean([n for _, n in stats]))
    if not (np.isfinite(noise) and noise > 0):
        with np.errstate(all="ignore"):
            noise = float(np.std(planes, dtype=np.float64))
    if not (np.isfinite(noise) and noise > 0):
        noise = 1.0
    gain = NOISE_LEVEL / noise  # of 255 per flux unit, for faint signal
    if not (np.isfinite(gain) and gain > 0):
        raise FitsError("its pixel values span no usable range")
    i_band, r_band, g_band = (planes[2], planes[1], planes[0]) if len(planes) == 3 else \
        (planes[0], planes[0], planes[0])
    q = _choose_q(np.stack([i_band, r_band, g_band]), gain)
    minimum = -SKY_LEVEL / gain
    rgb = lupton_rgb(i_band, r_band, g_band, [minimum] * 3, _stretch_for(q, gain), q)
    return rgb, notes, (no_data if no_data.any() else None)


def _fill_missing(planes: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Sky-subtracted ``planes`` with their NaN pixels filled: those enclosed by data from the
    pixels around them, those in areas reaching the image's edge with 0 (sky). Returns the
    planes and the counts of pixels filled each way (missing in any band)."""
    missing = ~np.isfinite(planes)
    if not missing.any():
        return planes, 0, 0
    anywhere = missing.any(axis=0).astype(np.uint8)
    count, labels = cv2.connectedComponents(anywhere, connectivity=8)
    touching = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = np.isin(labels, touching[touching > 0])
    enclosed = anywhere.astype(bool) & ~edge
    filled = np.nan_to_num(planes, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    if enclosed.sum() > MAX_INPAINTED:  # not a masked star: a sieve of blanks, shown as sky
        return filled, 0, int(anywhere.sum())
    if enclosed.any():
        mask = enclosed.astype(np.uint8)
        filled = np.stack([cv2.inpaint(plane, mask, 3, cv2.INPAINT_TELEA) for plane in filled])
    return filled, int(enclosed.sum()), int(edge.sum())


def read_fits(source, name: str = "upload", max_bytes: int = 25 * 1024 * 1024,
              max_decoded: int = 120_000_000) -> FitsPicture:
    """A FITS source (path, bytes, or a ``BandSet``) as a Kaggle-like colour picture."""
    if isinstance(source, BandSet):
        planes, header = [], None
        for band, part, label in zip(BANDS, (source.g, source.r, source.i), source.names):
            plane, this_header = read_planes(part, label, max_bytes, max_decoded)
            if plane.shape[0] != 1:
                raise FitsError(f"{label}: a band file must hold one band, not "
                                f"{plane.shape[0]}")
            planes.append(plane[0])
            header = header if header is not None else this_header
        if len({p.shape for p in planes}) != 1:
            raise FitsError(f"{name}: the g, r and i files differ in size "
                            f"({', '.join('x'.join(map(str, p.shape)) for p in planes)})")
        planes = np.stack(planes)
    else:
        planes, header = read_planes(source, name, max_bytes, max_decoded)
    try:
        with np.errstate(all="ignore"):  # hostile values overflow; the result is checked below
            rgb, notes, no_data = to_colour(planes)
    except FitsError:
        raise
    except Exception as exc:  # any arithmetic surprise of hostile values: one message, no trace
        raise FitsError(f"{name}: its pixel values cannot be shown as an image") from exc
    if planes.shape[0] == 1:
        notes.append("one band: shown in grey (the model learned from g, r, i colour)")
    elif not isinstance(source, BandSet):
        notes.append("its planes 1, 2 and 3 read as the g, r and i bands")
    return FitsPicture(rgb=rgb, centre=centre_radec(header, rgb.shape), notes=notes,
                       no_data=no_data)


def group_band_files(names) -> tuple[list[tuple[str, tuple[int, int, int]]], list[int]]:
    """Find g, r, i triplets among file ``names`` by their ``_g``/``_r``/``_i`` suffix.

    Returns ([(galaxy name, (index of g, of r, of i))], [indices left as they are])."""
    stems: dict[str, dict[str, int]] = {}
    for index, name in enumerate(names):
        base, extension = os.path.splitext(os.path.basename(name))
        match = _BAND_IN_NAME.match(base)
        if extension.lower() in FITS_EXTENSIONS and match:
            stems.setdefault(match.group("stem"), {})[match.group("band").lower()] = index
    groups, grouped = [], set()
    for stem, bands in stems.items():
        if set(bands) == set(BANDS):
            groups.append((stem, (bands["g"], bands["r"], bands["i"])))
            grouped.update(bands.values())
    return groups, [i for i in range(len(names)) if i not in grouped]
