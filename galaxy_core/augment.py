"""Training-time augmentation on whole batches, and the 8 dihedral views for test-time averaging.

Galaxies have no preferred orientation. Training images are cached with extra margin around
the model's crop (``context_fraction``) so that one ``grid_sample`` per batch can rotate by any
angle, flip, zoom slightly and take the model's crop without black corners.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import Preprocess

SQRT2 = math.sqrt(2.0)
TTA_VIEWS = 8  # test-time augmentation averages the 8 dihedral views
SEED_MAX_ROTATION_DEG = 20  # 'seed': rotations up to this angle either way, as in the seed
FULL_MAX_ZOOM = 1.1  # 'full': zoom log-uniform in [1 / this, this]
FULL_MAX_SHIFT = 0.04  # 'full': shift up to this fraction of the crop along each axis
# 'reframe': this share of each batch is framed as an upload might be: the galaxy zoomed
# log-uniformly in [1 / REFRAME_MAX_ZOOM, REFRAME_MAX_ZOOM] and moved by up to REFRAME_MAX_SHIFT
# of the whole frame along each axis, sky-like noise where the view leaves the frame; the rest
# as 'full'. The ranges cover bench.framing's cases (0.5x-2x, (48, -32) px of 424).
REFRAME_SHARE = 0.5
REFRAME_MAX_ZOOM = 2.0
REFRAME_MAX_SHIFT = 0.12

# What each mode does, in words (the model card quotes these).
AUGMENT_DESCRIPTIONS = {
    "none": "none: the plain centre crop",
    "seed": f"horizontal flips and rotations up to {SEED_MAX_ROTATION_DEG} deg, as in the seed",
    "full": f"any rotation, flips, zoom {1 / FULL_MAX_ZOOM:.1f}-{FULL_MAX_ZOOM:.1f}, shifts up "
            f"to {FULL_MAX_SHIFT:.0%}",
    "reframe": f"as 'full', and {REFRAME_SHARE:.0%} of the images re-framed: zoom "
               f"{1 / REFRAME_MAX_ZOOM:.1f}-{REFRAME_MAX_ZOOM:.1f}, shifts up to "
               f"{REFRAME_MAX_SHIFT:.0%} of the frame, sky-like noise beyond it",
}


def context_fraction(preprocess: Preprocess, mode: str = "full") -> float:
    """Fraction of the frame cached for training: room for any rotation, capped at the frame
    ('reframe': the whole frame, since its wide views reach the edges)."""
    if mode == "reframe":
        return 1.0
    return min(1.0, preprocess.crop_fraction * SQRT2 * 1.1)


def context_size(preprocess: Preprocess, mode: str = "full") -> int:
    return math.ceil(preprocess.image_size * context_fraction(preprocess, mode)
                     / preprocess.crop_fraction)


def _sky_fill(batch: torch.Tensor, side: int, generator: torch.Generator | None) -> torch.Tensor:
    """(B,3,side,side) noise like each cached frame's sky: per channel, the median and the
    spread (scaled median absolute deviation) of its 4-pixel border, as bench.framing fills a
    wider cut-out."""
    b, c = batch.shape[:2]
    border = torch.cat([batch[:, :, :4].reshape(b, c, -1), batch[:, :, -4:].reshape(b, c, -1),
                        batch[:, :, :, :4].reshape(b, c, -1),
                        batch[:, :, :, -4:].reshape(b, c, -1)], dim=2)
    median = border.median(dim=2).values
    spread = 1.4826 * (border - median[..., None]).abs().median(dim=2).values
    noise = torch.randn((b, c, side, side), generator=generator).to(batch.device, batch.dtype)
    return (median[..., None, None] + spread.clamp(min=0.5 / 255)[..., None, None] * noise
            ).clamp_(0.0, 1.0)


def augment_batch(batch: torch.Tensor, preprocess: Preprocess, mode: str,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """float (B,3,C,C) in [0,1] cached with context -> (B,3,S,S) augmented model crops.

    ``mode``: one of ``AUGMENT_DESCRIPTIONS`` ('none', 'seed', 'full' or 'reframe'); the
    batch must be cached with ``context_fraction(preprocess, mode)``.
    """
    b = batch.shape[0]
    size = preprocess.image_size
    scale = preprocess.crop_fraction / context_fraction(preprocess, mode)  # crop in the cache
    ones = torch.ones(b)
    if mode == "none":
        angle, flip_x, flip_y, zoom, shift = torch.zeros(b), ones, ones, ones, torch.zeros(b, 2)
    elif mode == "seed":
        angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(SEED_MAX_ROTATION_DEG)
        flip_x = torch.where(torch.rand(b, generator=generator) < 0.5, -ones, ones)
        flip_y, zoom, shift = ones, ones, torch.zeros(b, 2)
    elif mode in ("full", "reframe"):
        angle = torch.rand(b, generator=generator) * 2 * math.pi
        flip_x = torch.where(torch.rand(b, generator=generator) < 0.5, -ones, ones)
        flip_y = ones  # a rotation by 180 deg times a horizontal flip covers vertical flips
        zoom = torch.exp((torch.rand(b, generator=generator) * 2 - 1) * math.log(FULL_MAX_ZOOM))
        shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * FULL_MAX_SHIFT * 2 * scale
        if mode == "reframe":
            chosen = torch.rand(b, generator=generator) < REFRAME_SHARE
            wide = torch.exp((torch.rand(b, generator=generator) * 2 - 1)
                             * math.log(REFRAME_MAX_ZOOM))
            # in units of the Kaggle frame, so a 2x zoom with the largest shift puts the
            # galaxy near the edge of the view (a tight crop off centre)
            moved = (torch.rand(b, 2, generator=generator) * 2 - 1) * REFRAME_MAX_SHIFT * 2
            zoom = torch.where(chosen, wide, zoom)
            shift = torch.where(chosen[:, None], moved, shift)
    else:
        raise ValueError(f"augment mode must be none, seed, full or reframe, got {mode!r}")
    cos, sin = torch.cos(angle), torch.sin(angle)
    s = scale / zoom
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cos * s * flip_x
    theta[:, 0, 1] = -sin * s * flip_y
    theta[:, 1, 0] = sin * s * flip_x
    theta[:, 1, 1] = cos * s * flip_y
    theta[:, :, 2] = shift
    theta = theta.to(batch.device, batch.dtype)
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    views = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if mode != "reframe":
        return views
    inside = F.grid_sample(torch.ones_like(batch[:, :1]), grid, mode="bilinear",
                           padding_mode="zeros", align_corners=False)  # 1 in frame, 0 beyond
    return views + (1 - inside) * _sky_fill(batch, size, generator)


def dihedral_views(batch: torch.Tensor):
    """The 8 flips/right-angle rotations of (B,3,S,S): exact, no resampling."""
    for k in range(4):
        rotated = torch.rot90(batch, k, dims=(2, 3))
        yield rotated
        yield torch.flip(rotated, dims=(3,))


# the dihedral views that see the wider square when a frame asks for one (framing.Frame.wider):
# one of each rotation, two of them flipped, so both halves average over every orientation
WIDE_VIEWS = (1, 2, 5, 6)


def mixed_dihedral_views(batch: torch.Tensor, wide: torch.Tensor | None):
    """The 8 ``dihedral_views`` of (B,3,S,S), those in ``WIDE_VIEWS`` taken of ``wide`` instead
    (the same shape: each image's wider square, or the image itself; None: all of ``batch``)."""
    if wide is None:
        yield from dihedral_views(batch)
        return
    for index in range(TTA_VIEWS):  # dihedral_views' order: rotation index // 2, flipped if odd
        rotated = torch.rot90(wide if index in WIDE_VIEWS else batch, index // 2, dims=(2, 3))
        yield torch.flip(rotated, dims=(3,)) if index % 2 else rotated


def undo_dihedral_views(maps: torch.Tensor) -> torch.Tensor:
    """(8,C,S,S) maps of the 8 ``dihedral_views`` of one image, in their order -> each turned
    back into the image's own frame."""
    return torch.stack([torch.rot90(torch.flip(m, dims=(2,)) if i % 2 else m, -(i // 2),
                                    dims=(1, 2)) for i, m in enumerate(maps)])
