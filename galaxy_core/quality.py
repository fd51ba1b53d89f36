"""Flags for images unlike the training cut-outs, so a verdict on them is hedged and says why.

An image keeps its prediction whatever is flagged; a flag says the model has seen nothing like
it, so the answer deserves less trust. The checks, cheapest first:
- ``too small``: under ``MIN_SIDE`` px on a side (the training images are 424 px);
- ``blank``: next to no variation (a flat colour), or mostly saturated white;
- ``grey``: no colour at all (one band, or a greyscale picture): every training image is a
  colour composite of three bands, g, r and i;
- ``no source near the centre``: automatic framing finds nothing to frame;
- ``no data``: more than ``MAX_NO_DATA`` of the region the model sees (the centre
  ``crop_fraction`` of its frame, or twice that where half the views are wider) had no data
  (NaN in a FITS file: a masked region, a bad column, a mosaic's edge) and was filled in, so
  the model would judge the fill, not the galaxy (a masked star covers far less);
- ``unlike the training images``: a few measures of brightness and colour compared with the
  training images (measured on the training part of a split by ``python -m train.framing_stats``,
  stored in ``quality_ranges.json``): flagged when two lie outside the range that 99.5% of the
  training images span, or one lies outside the range of all of them. The measures: the sky's
  level and texture (a photograph has no dark, smooth background), the share of dark pixels, the
  share of the frame the central source covers, and the source's colour. One measure slightly
  out of range is common among real galaxies (a bright star, a large neighbour), hence two.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import paths
from .fits import NO_DATA_KEY
from .framing import (Frame, FramingStats, analysis_size, choose_frame, crop, find_source,
                      sky_of, unchanged_frame)

RANGES_FILE = os.path.join(paths.ASSETS, "models", "quality_ranges.json")
MIN_SIDE = 64
TRAINING_SIDE = 424  # px: the Kaggle cut-outs' side
FEATURES = {  # name: what it says when below the training range, and when above it
    "sky_level": ("the background is darker than the training images' sky",
                  "the background is brighter than a night sky"),
    "sky_texture": ("the background is smoother than a sky with noise (drawn or processed?)",
                    "the background is textured, not smooth sky"),
    "dark_share": ("too little of the frame is dark sky",
                   "more of the frame is empty sky than in a galaxy cut-out"),
    "source_area": ("the central object covers less of the frame than a galaxy cut-out's",
                    "the central object fills more of the frame than a galaxy cut-out"),
    "source_colour": ("the colours are bluer than SDSS galaxies'",
                      "the colours are redder than SDSS galaxies'"),
}
# the mean distance of a pixel's channels from their mean, on a 64 px copy: 0 for a grey image;
# at least 0.33 (median 1.77) on the 4,000 sample cut-outs, whose sky noise differs per band
GREY_CHROMA = 0.1
# share of the region the model sees: a masked star (a few dozen pixels) or a bad column of
# a 256 px image's 128 px view (0.8%) stays under it; a masked strip across the galaxy does not
MAX_NO_DATA = 0.01
COVERAGE = (0.25, 99.75)  # percentiles of the training images: two measures outside flag
EXTREMES = (0.0, 100.0)  # ... one measure outside these flags


@dataclass(frozen=True)
class Flag:
    code: str  # too_small, blank, grey, no_source, unlike, no_data
    message: str


def measures(image: Image.Image) -> dict[str, float] | None:
    """The measures compared with the training images (None: no source found)."""
    size = analysis_size(image.size)
    rgb = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BOX), dtype=np.float32)
    grey = rgb.mean(axis=2)
    sky, noise = sky_of(grey)
    source = find_source(image)
    if source is None:
        return None
    # the source's colour: (red - blue) / total over its brightest pixels above the sky
    light = rgb - sky_of(rgb)[0]
    bright = grey - float(sky) > np.percentile(grey - float(sky), 99)
    total = light[bright].sum()
    colour = float((light[bright][:, 0].sum() - light[bright][:, 2].sum()) / total) \
        if total > 0 else 0.0
    return {"sky_level": float(sky), "sky_texture": float(noise),
            "dark_share": float(np.mean(grey < float(sky) + 10.0)),
            "source_area": source.area, "source_colour": colour}


def ranges(all_measures: list[dict[str, float]]) -> dict[str, list[float]]:
    """The training images' ranges of each measure: [low, high, lowest, highest] (the
    ``COVERAGE`` and ``EXTREMES`` percentiles)."""
    return {name: [float(np.percentile([m[name] for m in all_measures], q))
                   for q in (*COVERAGE, *EXTREMES)] for name in FEATURES}


def too_small(image: Image.Image) -> list[Flag]:
    """The "too small" flag, if ``image`` is (a list, so it starts ``flags``'s)."""
    if min(image.size) >= MIN_SIDE:
        return []
    return [Flag("too_small", f"{image.width}x{image.height} px is small (the training images "
                              f"are {TRAINING_SIDE} px; under {MIN_SIDE} px is flagged)")]


def no_data(image: Image.Image, frame: Frame | None = None,
            crop_fraction: float = 1.0) -> list[Flag]:
    """The "no data" flag, if too much of the region the model sees had no data (the mask a
    FITS picture keeps in ``image.info[NO_DATA_KEY]``): the centre ``crop_fraction`` of
    ``frame`` (None: of the image's centre square), ``frame.wider`` times that when half the
    views are wider."""
    missing = image.info.get(NO_DATA_KEY)  # an upload's own metadata may use the name too
    if not (isinstance(missing, np.ndarray) and missing.dtype == bool and missing.ndim == 2):
        return []
    frame = (frame or unchanged_frame(*image.size)).on(missing.shape[1])  # the mask's pixels
    half = min(1.0, crop_fraction * frame.wider) * frame.side / 2
    left, top = max(0, round(frame.cx - half)), max(0, round(frame.cy - half))
    right = min(missing.shape[1], round(frame.cx + half))
    bottom = min(missing.shape[0], round(frame.cy + half))
    region = missing[top:bottom, left:right]
    share = float(region.mean()) if region.size else 0.0
    if share <= MAX_NO_DATA:
        return []
    return [Flag("no_data", f"{share:.0%} of the region the model sees had no data (NaN in the "
                            f"FITS file) and was filled in, so it judges the fill there, not "
                            f"the galaxy")]


def flags(image: Image.Image, training_ranges: dict[str, list[float]]) -> list[Flag]:
    """What makes ``image`` unlike the training cut-outs ([] when nothing does)."""
    found = too_small(image)
    grey = np.asarray(image.convert("L").resize((64, 64), Image.Resampling.BOX), np.float32)
    if grey.std() < 2.0 or np.mean(grey >= 250) > 0.5:
        found.append(Flag("blank", "the image is blank or saturated"))
        return found
    rgb = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BOX), np.float32)
    if np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean() < GREY_CHROMA:
        found.append(Flag("grey", "it has no colour (one band, or a greyscale picture), and the "
                                  "model learned from colour images of three bands (g, r, i)"))
    values = measures(image)
    if values is None:
        found.append(Flag("no_source", "no source near the centre"))
        return found
    outside = [name for name, (low, high, _, _) in training_ranges.items()
               if not low <= values[name] <= high]
    beyond = [name for name, (_, _, lowest, highest) in training_ranges.items()
              if not lowest <= values[name] <= highest]
    if len(outside) >= 2 or beyond:
        found.append(Flag("unlike", "; ".join(
            FEATURES[name][values[name] > training_ranges[name][1]] for name in outside)))
    return found


_ranges_cache: dict[str, dict] = {}


def shipped_ranges() -> dict[str, list[float]]:
    """The training images' ranges shipped with the app (read once)."""
    if RANGES_FILE not in _ranges_cache:
        with open(RANGES_FILE, encoding="utf-8") as handle:
            _ranges_cache[RANGES_FILE] = json.load(handle)["ranges"]
    return _ranges_cache[RANGES_FILE]


def flags_as_seen(image: Image.Image, training_ranges: dict[str, list[float]],
                  framing: FramingStats | None = None, frame: Frame | None = None,
                  crop_fraction: float = 1.0) -> list[Flag]:
    """``flags`` of what the model is shown: where automatic framing (``framing``) re-frames
    the image, the new frame is judged, so a wide field that framing made look like a training
    cut-out is not hedged for being wide (its intervals hold again: docs/command-line.md); an
    image too small to trust is flagged whatever framing does. ``frame``: the one the
    prediction cut the model's input with (``PredictionResult.frames``), judged instead of a
    new choice, which a JPEG decoded at another scale could make differently.
    ``crop_fraction``: the model's (``Preprocess.crop_fraction``), for ``no_data``."""
    if frame is not None:
        frame = frame.on(image.width)
    elif framing is not None:
        frame = choose_frame(image, framing)
    if frame is None or not frame.moved:
        return flags(image, training_ranges) + no_data(image, frame, crop_fraction)
    view = crop(image.convert("RGB"), frame.cx, frame.cy, frame.side, TRAINING_SIDE)
    return too_small(image) + flags(view, training_ranges) + no_data(image, frame, crop_fraction)
