"""Automatic framing: find the galaxy nearest the centre and frame it as the training cut-outs are.

The Kaggle cut-outs scale with the galaxy, so every training galaxy fills about the same share
of its frame, and the model then looks at the centre of it. An upload framed otherwise (a wide
field, a tight crop, the galaxy off centre) is re-framed before the model sees it:

1. On a copy about ``ANALYSIS_SIDE`` px across, the sky (median of the border) and its noise
   (scaled median absolute deviation) are measured per image; pixels of a lightly smoothed grey
   copy above an isophote (8.5% of the image's bright level, its 99.9th percentile, and at
   least 3 sigma of the sky) are sources, grouped into connected regions. A fixed share of the
   bright level, not of the noise, keeps the faint outskirts of neighbours and star halos from
   merging with the galaxy, and works alike for a JPEG and a stretched FITS file.
2. The source covering the centre is the galaxy; if none does, the one with the most light
   discounted by its distance from the middle (``LIGHT_DISTANCE``): not the closest, which is
   often a star or a faint neighbour between the galaxy and the middle. Specks (under
   ``SPECK_AREA``) compete only when nothing larger was found. Its light-weighted centre and
   half-light radius (``r50``: half its light within it) are measured.
3. A galaxy smaller in its frame than all training galaxies but a few (``r50`` under the
   ``BAND[0]`` percentile of ``FramingStats``, measured on the training images by
   ``python -m train.framing_stats``) is re-framed: a frame centred on it, sized so its ``r50``
   is the training median. A galaxy that does not cover the middle of the image (the middle is
   sky: never so in 1,000 training cut-outs) is re-centred at the same scale. Any other image
   keeps its frame exactly, including a galaxy larger than the training ones or whose light is
   centred away from the middle it covers: zooming out or re-centring those was measured to
   cost more on normally framed galaxies than it gained (docs/command-line.md, "Automatic
   framing"; a model trained with ``--augment reframe`` copes with small shifts itself).
4. A galaxy larger in its frame than ``WIDE_PERCENTILE`` % of training galaxies may be a cut-out
   tighter than the training ones, which framing cannot tell from a galaxy naturally large in
   its frame. Its frame stays, but half of the 8 test-time views (``augment.WIDE_VIEWS``) see
   ``WIDE_ZOOM`` times its side (``Frame.wider``): a tight crop is then also seen as the model
   learned it, and a large galaxy still half as it is. Measured on 400 held-out galaxies of each
   of two splits, this brought a 2x tighter cut-out from 1.18x to 1.05x (split 2) and from 1.14x
   to 1.02x (split 0) of the unchanged images' RMSE, which moved by +0.0002 and -0.0001
   (docs/command-line.md, "Half the views wider").

Parts of the new frame outside the image are filled with sky-like noise (the border's median
and spread per channel, the same in every channel for a grey picture, from a fixed seed, so the
result is deterministic).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np
from PIL import Image

from . import paths

# the training galaxies' range a galaxy must leave to be re-framed (percentiles): wide, since
# how much of its frame a galaxy fills also says something of its shape (measured: re-framing
# the 20% outside the 10th-90th percentiles cost the shipped model 0.009 RMSE on cut-outs
# framed as in training)
BAND = (0.5, 99.5)
LIKE_TRAINING = "framed like the training images"  # a Frame's ``why`` when nothing is unusual
LARGER = "larger in the frame"  # how a Frame's ``why`` says its galaxy is larger than usual
ANALYSIS_SIDE = 128  # px: the shorter side of the copy sources are found on
MAX_ANALYSIS_RATIO = 8  # ... whose longer side is at most this many times that (a thin strip)
BORDER = 0.04  # share of the side that counts as the border, for the sky
MIN_AREA = 6  # px of the analysis copy: smaller detections are noise
# when no source covers the centre, each competes on its light divided by 1 + (d / this)^2, d its
# distance from the middle (share of the shorter side): one at a corner needs about 3x the light
# of one at the middle. Measured (2026-12-02) on 300 validation cut-outs shifted by 120-160 px of
# 424: the galaxy was found 97-98% of the time, against 49-57% when only sources within 0.25 of
# the middle competed (a star or faint neighbour there was zoomed in on); 125 against 126 of the
# 128 re-centred for a (48, -32) px shift. A faint speck nearer the middle lost a shifted
# galaxy 1 time in 10 when the closest source won.
LIGHT_DISTANCE = 0.5
# share of the image: a detection smaller than this is a speck, not a galaxy to frame, when a
# larger source exists (the smallest of 1,500 training galaxies covers 0.021; a speck near the
# middle was zoomed in on while the galaxy sat in a corner of the upload)
SPECK_AREA = 0.001
ISOPHOTE = 0.085  # the detection threshold, as a share of the image's bright level (docstring)
STATS_FILE = os.path.join(paths.ASSETS, "models", "framing_stats.json")
# on by default: on 200 held-out galaxies framed as in training it moved 2 and changed the
# shipped model's RMSE by +0.0002, and it rescues galaxies far too small in their frame
# (docs/command-line.md, "Automatic framing")
FRAMING_BY_DEFAULT = True
# a galaxy larger in its frame than this percentile of the training galaxies has half its views
# WIDE_ZOOM times wider (docstring, step 4; chosen with `python -m bench.wide_views` on half of
# split 2's held-out galaxies among the 75th, 90th and 95th percentiles and zooms of 1.4 and 2,
# checked on the other half)
WIDE_PERCENTILE = 95
WIDE_ZOOM = 2.0


@dataclass(frozen=True)
class FramingStats:
    """Half-light radius of training galaxies as a share of their frame's side."""

    r50_low: float  # BAND[0] percentile
    r50_median: float
    r50_high: float  # BAND[1] percentile
    off_high: float  # BAND[1] percentile of the centre's distance from the middle (share of side)
    galaxies: int
    source: str  # which images were measured
    r50_wide: float = math.inf  # WIDE_PERCENTILE percentile (inf: statistics without it)

    @classmethod
    def load(cls, path: str = STATS_FILE) -> "FramingStats":
        with open(path, encoding="utf-8") as handle:
            return cls(**json.load(handle))

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Source:
    x: float  # light-weighted centre, as a share of the width
    y: float  # ... of the height
    r50: float  # half-light radius, as a share of the shorter side
    area: float  # share of the image above the detection threshold
    covers_centre: bool = True  # the middle pixel of the image is part of it


@dataclass(frozen=True)
class Frame:
    """The square the model should see, in the image's pixels (it may reach outside)."""

    cx: float
    cy: float
    side: float
    moved: bool  # False: the image's own centre square, unchanged
    why: str
    source: Source | None
    image_width: int = 0  # px: of the image it was chosen on (one decode of it)
    action: str = ""  # what was done, in a few words ("zoomed in 3.0x", "re-centred"; "": nothing)
    # half of the 8 test-time views see a square this many times ``side`` (docstring, step 4)
    wider: float = 1.0

    def on(self, width: int) -> "Frame":
        """The same region of another decode of the image, ``width`` px wide (a JPEG decoded at
        a smaller scale for a smaller output), so two sizes of one picture show one region."""
        if self.image_width <= 0:
            raise ValueError("this frame does not say which width of the image it was chosen on")
        scale = width / self.image_width
        return replace(self, cx=self.cx * scale, cy=self.cy * scale, side=self.side * scale,
                       image_width=width)


def analysis_size(size: tuple[int, int]) -> tuple[int, int]:
    """The analysis copy's (width, height): the shorter side ``ANALYSIS_SIDE`` px, the longer at
    most ``MAX_ANALYSIS_RATIO`` times that (a 1 x 4,000 px strip would otherwise become a
    128 x 512,000 copy: seconds and gigabytes for a few kilobytes of upload)."""
    width, height = size
    scale = min(ANALYSIS_SIDE / min(width, height),
                MAX_ANALYSIS_RATIO * ANALYSIS_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _grey_copy(image: Image.Image) -> np.ndarray:
    size = analysis_size(image.size)
    small = image.convert("L").resize(size, Image.Resampling.BOX if size[0] < image.width
                                      else Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32)


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` of a float array, to the last bit (numpy's own index and
    interpolation arithmetic), from one partial sort of a few pixels instead of numpy's two-``kth``
    partition of all of them (3.5x slower on a smoothed image's many near-equal values). Of an
    image, only the pixels at least the ``wanted``-th largest row maximum are sorted: ``wanted``
    rows hold a pixel that high, so the value sought is among them."""
    flat = values.ravel()
    position = (flat.size - 1) * (q / 100)  # as numpy's "linear" method computes it
    low = int(np.floor(position))
    fraction = position - low
    wanted = flat.size - low  # the value at ``low`` and every one above it
    if values.ndim == 2 and wanted <= len(values):
        row_max = values.max(axis=1)
        bound = np.partition(row_max, len(row_max) - wanted)[len(row_max) - wanted]
        flat = flat[flat >= bound]
        low = flat.size - wanted
    parted = np.partition(flat, low)
    below = parted[low]
    above = parted[low + 1:].min() if wanted > 1 else below
    step = above - below  # in the array's type, as numpy's interpolation
    return float(above - step * (1 - fraction) if fraction >= 0.5 else below + step * fraction)


def _median(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=0)`` from one partial sort (its wrappers cost more than the
    sort on a border's few thousand pixels)."""
    middle = len(values) // 2
    parted = np.partition(values, middle, axis=0)
    if len(values) % 2:
        return parted[middle]
    return (parted[:middle].max(axis=0) + parted[middle]) / 2


def sky_of(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (median, 1.4826 x MAD) of the border of an (H, W[, C]) array."""
    band = max(1, int(round(min(array.shape[:2]) * BORDER)))
    border = np.concatenate([array[:band].reshape(-1, *array.shape[2:]),
                             array[-band:].reshape(-1, *array.shape[2:]),
                             array[:, :band].reshape(-1, *array.shape[2:]),
                             array[:, -band:].reshape(-1, *array.shape[2:])]).astype(np.float32)
    median = _median(border)
    return median, 1.4826 * _median(np.abs(border - median))


def find_source(image: Image.Image) -> Source | None:
    """The source nearest the centre of ``image`` (docstring, steps 1-2), or None."""
    grey = _grey_copy(image)
    sky, noise = sky_of(grey)
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0)
    # an isophote at ISOPHOTE of the image's bright level (the Kaggle cut-outs' 16 of 190 grey
    # levels), and at least 3 sigma of the smoothed sky (smoothing by 1 px divides pixel noise
    # by about 3.5)
    bright = _percentile(smooth, 99.9) - float(sky)
    threshold = float(sky) + max(3.0 * float(noise) / 3.5, ISOPHOTE * bright, 1.0)
    mask = np.greater(smooth, threshold).view(np.uint8)  # 0/1 bytes, not copied
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = grey.shape
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    candidates = np.flatnonzero(stats[1:count, cv2.CC_STAT_AREA] >= MIN_AREA) + 1
    if len(candidates) == 0:
        return None
    larger = candidates[stats[candidates, cv2.CC_STAT_AREA] >= SPECK_AREA * width * height]
    if len(larger):
        candidates = larger
    at_centre = labels[int(round(centre[1])), int(round(centre[0]))]
    if at_centre in candidates:  # the source covering the centre
        best = int(at_centre)
    else:  # else the most light, discounted by distance (not a star or speck nearer still)
        offsets = centroids[candidates] - centre
        distance = np.hypot(offsets[:, 0], offsets[:, 1]) / min(width, height)
        light_of = np.bincount(labels.ravel(), weights=np.maximum(grey - float(sky), 0).ravel(),
                               minlength=count)
        score = light_of[candidates] / (1 + (distance / LIGHT_DISTANCE) ** 2)
        best = int(candidates[np.argmax(score)])
    left, top, box_width, box_height = stats[best, :4]  # its pixels, from its bounding box
    ys, xs = np.nonzero(labels[top:top + box_height, left:left + box_width] == best)
    ys, xs = ys + top, xs + left
    light = np.maximum(grey[ys, xs] - float(sky), 0.0)
    if light.sum() <= 0:
        return None
    # the centre from the brightest part alone, so a neighbour blended into the same region
    # does not pull it away from the galaxy's core
    core = smooth[ys, xs] - float(sky) >= 0.5 * float(smooth[ys, xs].max() - float(sky))
    weights = (light[core] + 1e-6).astype(np.float64)
    x0 = float(np.dot(xs[core], weights) / weights.sum())
    y0 = float(np.dot(ys[core], weights) / weights.sum())
    radii = np.hypot(xs - x0, ys - y0)
    order = np.argsort(radii)
    cumulative = np.cumsum(light[order])
    r50 = float(radii[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
    return Source(x=float(x0 + 0.5) / width, y=float(y0 + 0.5) / height,
                  r50=max(r50, 0.5) / min(width, height), area=len(xs) / (width * height),
                  covers_centre=best == at_centre)


def unchanged_frame(width: int, height: int) -> Frame:
    """The frame that leaves a ``width`` x ``height`` image as it is: its centre square."""
    return Frame(width / 2, height / 2, min(width, height), False, "", None, width)


def choose_frame(image: Image.Image, stats: FramingStats) -> Frame:
    """Where the model should look in ``image`` (docstring, steps 3-4)."""
    width, height = image.size
    shorter = min(width, height)
    unchanged = unchanged_frame(width, height)
    source = find_source(image)
    if source is None:
        return Frame(**{**asdict(unchanged), "why": "no source near the centre"})
    if source.r50 < stats.r50_low:  # far smaller than any training galaxy: zoom in on it
        side = source.r50 * shorter / stats.r50_median
        return Frame(source.x * width, source.y * height, side, True,
                     f"zoomed in {shorter / side:.1f}x on the object found, which was small in the "
                     f"frame",
                     source, width, f"zoomed in {shorter / side:.1f}x")
    return _widened(_frame_for(source, unchanged, height, stats), stats)


def _frame_for(source: Source, unchanged: Frame, height: int, stats: FramingStats) -> Frame:
    """The frame of a galaxy not far too small in ``unchanged``'s image: re-centred when the
    middle is sky, else the image's own centre square."""
    width, shorter = unchanged.image_width, unchanged.side
    off = np.hypot(source.x - 0.5, source.y - 0.5)
    if not source.covers_centre:  # the middle is sky: centre the frame on the galaxy
        return Frame(source.x * width, source.y * height, shorter, True,
                     f"re-centred on the object found, {off:.0%} of the frame off centre, as "
                     f"nothing lay at the middle", source, width, "re-centred")
    if source.r50 > stats.r50_high or off > stats.off_high:  # measured: moving these costs more
        what = LARGER if source.r50 > stats.r50_high else \
            f"further off centre ({off:.0%} of the frame)"
        return replace(unchanged, source=source,
                       why=f"kept its frame, though the object found is {what} than almost "
                           f"every training galaxy")
    return replace(unchanged, source=source, why=LIKE_TRAINING)


def _widened(frame: Frame, stats: FramingStats) -> Frame:
    """``frame`` with half its views ``WIDE_ZOOM`` times wider when its galaxy is larger in the
    frame than ``WIDE_PERCENTILE`` % of the training galaxies (docstring, step 4)."""
    if frame.source is None or not frame.source.r50 > stats.r50_wide:
        return frame
    return replace(frame, wider=WIDE_ZOOM)


def action_of(frame: Frame | None, eight_views: bool = True) -> str:
    """What framing did to an image, in a few words for a table ("": nothing); ``eight_views``:
    the prediction averaged the 8 views (which include the wider ones)."""
    if frame is None:
        return ""
    wide = f"half the views {frame.wider:g}x wider" if frame.wider > 1 and eight_views else ""
    return "; ".join(part for part in (frame.action, wide) if part)


def caption_note(frame: Frame | None, seen: str = "8 views") -> str:
    """What a picture's caption adds, in brackets: what framing did, or why it left an unusual
    image alone ("" when framing was off or the image looked like a training cut-out).
    ``seen``: where the picture's numbers come from: "8 views" (a prediction's, the wider ones
    included), "one view" (a prediction of the region shown), "maps" (Grad-CAM's, all of the
    region shown) or "search" (a similarity search's, of the region shown)."""
    if frame is None:
        return ""
    notes = [] if frame.why in ("", LIKE_TRAINING) else [frame.why]
    if frame.wider > 1:
        # said once: the reason may already say the galaxy is larger than almost all of them
        large = "" if LARGER in frame.why else \
            f"{LARGER} than {WIDE_PERCENTILE}% of training galaxies: "
        tight = "in case it was cut out tighter than they were"
        notes.append({
            "8 views": f"{large}of the 8 views, half look {frame.wider:g}x wider, {tight}",
            "one view": f"{large}with the 8 views on, half would look {frame.wider:g}x wider, "
                        f"{tight}",
            "maps": f"{large}these maps are of the region shown, while half of a "
                    f"prediction's 8 views look {frame.wider:g}x wider, {tight}",
            "search": f"{large}the search compares the region shown, while half of a "
                      f"prediction's 8 views look {frame.wider:g}x wider, {tight}"}[seen])
    return f" ({'; '.join(notes)})" if notes else ""


def crop(image: Image.Image, cx: float, cy: float, side: float, size: int,
         seed: int = 0) -> Image.Image:
    """The square of ``side`` px around (cx, cy) resized to ``size``; outside the image it is
    sky-like noise (the border's per-channel median and spread; grey for a grey picture)."""
    left, top = cx - side / 2, cy - side / 2
    box = (left, top, left + side, top + side)
    if left >= 0 and top >= 0 and box[2] <= image.width and box[3] <= image.height:
        return image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    # paste the image into a noise canvas covering the box, at the output's resolution
    scale = size / side
    canvas_w, canvas_h = round(image.width * scale), round(image.height * scale)
    shrunk = image.resize((max(1, canvas_w), max(1, canvas_h)), Image.Resampling.BILINEAR)
    array = np.asarray(shrunk.convert("RGB"), dtype=np.float32)
    median, spread = sky_of(array)
    rng = np.random.default_rng(seed)
    if (array == array[..., :1]).all():  # a grey picture gets grey sky, not colour noise
        canvas = np.repeat(rng.normal(median[0], max(float(spread[0]), 0.5), (size, size, 1)),
                           3, axis=2)
    else:
        canvas = rng.normal(median, np.maximum(spread, 0.5), (size, size, 3))
    x0, y0 = round(-left * scale), round(-top * scale)
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(size, x0 + array.shape[1]), min(size, y0 + array.shape[0])
    if xe > xs and ye > ys:
        canvas[ys:ye, xs:xe] = array[ys - y0:ye - y0, xs - x0:xe - x0]
    return Image.fromarray(canvas.clip(0, 255).round().astype(np.uint8))


_stats_cache: dict[str, FramingStats] = {}


def measure(images) -> FramingStats:
    """The statistics of an iterable of training ``(PIL image)``; images with no source found
    are left out (and counted in ``source``)."""
    r50, off, missing = [], [], 0
    for image in images:
        source = find_source(image)
        if source is None:
            missing += 1
            continue
        r50.append(source.r50)
        off.append(float(np.hypot(source.x - 0.5, source.y - 0.5)))
    if len(r50) < 10:
        raise ValueError(f"framing statistics need at least 10 galaxies with a source found, "
                         f"got {len(r50)}")
    low, median, wide, high = np.percentile(r50, [BAND[0], 50, WIDE_PERCENTILE, BAND[1]])
    return FramingStats(r50_low=float(low), r50_median=float(median), r50_high=float(high),
                        off_high=float(np.percentile(off, BAND[1])), galaxies=len(r50),
                        source=f"{len(r50)} images ({missing} without a source found)",
                        r50_wide=float(wide))


def shipped_stats() -> FramingStats:
    """The training galaxies' statistics shipped with the app (read once)."""
    if STATS_FILE not in _stats_cache:
        _stats_cache[STATS_FILE] = FramingStats.load()
    return _stats_cache[STATS_FILE]
