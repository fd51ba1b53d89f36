"""How a model input is cut from a decoded image: random views for training, fixed views for use.

Galaxies have no preferred orientation. Images are decoded with extra margin around the model's
crop (``Preprocess.context_size``), and one ``grid_sample`` per batch rotates, mirrors, zooms and
takes the model's crop without black corners. Training (``augment_batch``), prediction,
evaluation and Grad-CAM (``model_view``) all resample through this one function, so the model
sees its inputs at use exactly as it saw them in training.

Test-time augmentation averages ``TTA_VIEWS``: the crop rotated by multiples of 60 degrees, each
also mirrored (the 12 symmetries of a hexagon). Measured on held-out galaxies (see the model
card), rotations between the right angles help more than the 8 right-angle rotations/flips.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import Preprocess

TTA_ANGLES = (0, 60, 120, 180, 240, 300)  # degrees
TTA_VIEWS = tuple((angle, mirrored) for angle in TTA_ANGLES for mirrored in (False, True))


def _resample(batch: torch.Tensor, preprocess: Preprocess, angle: torch.Tensor,
              flip_x: torch.Tensor, flip_y: torch.Tensor, zoom: torch.Tensor,
              shift: torch.Tensor) -> torch.Tensor:
    """float (B,3,C,C) contexts -> (B,3,S,S) crops; per-image angle (radians), flips (+-1),
    zoom and shift (in the context's normalised coordinates)."""
    b, size = batch.shape[0], preprocess.image_size
    if batch.shape[-1] != preprocess.context_size or batch.shape[-2] != preprocess.context_size:
        raise ValueError(f"expected images decoded with context ({preprocess.context_size} px), "
                         f"got {tuple(batch.shape[-2:])}")
    scale = preprocess.crop_fraction / preprocess.context_fraction  # crop as part of the context
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
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def augment_batch(batch: torch.Tensor, preprocess: Preprocess, mode: str,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """float (B,3,C,C) in [0,1] decoded with context -> (B,3,S,S) augmented model crops.

    ``mode``: 'none' (plain centre crop), 'seed' (hflip + rotation up to 20 deg, as the seed),
    'full' (any rotation, both flips, zoom 0.9-1.1, shift up to 4%).
    """
    b = batch.shape[0]
    scale = preprocess.crop_fraction / preprocess.context_fraction
    ones = torch.ones(b)
    if mode == "none":
        angle, flip_x, flip_y, zoom, shift = torch.zeros(b), ones, ones, ones, torch.zeros(b, 2)
    elif mode == "seed":
        angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(20)
        flip_x = torch.where(torch.rand(b, generator=generator) < 0.5, -ones, ones)
        flip_y, zoom, shift = ones, ones, torch.zeros(b, 2)
    elif mode == "full":
        angle = torch.rand(b, generator=generator) * 2 * math.pi
        flip_x = torch.where(torch.rand(b, generator=generator) < 0.5, -ones, ones)
        flip_y = ones  # a rotation by 180 deg times a horizontal flip covers vertical flips
        zoom = torch.exp((torch.rand(b, generator=generator) * 2 - 1) * math.log(1.1))
        shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * 0.04 * 2 * scale
    else:
        raise ValueError(f"augment mode must be none, seed or full, got {mode!r}")
    return _resample(batch, preprocess, angle, flip_x, flip_y, zoom, shift)


def model_view(batch: torch.Tensor, preprocess: Preprocess, angle_degrees: float = 0.0,
               mirrored: bool = False) -> torch.Tensor:
    """float (B,3,C,C) in [0,1] decoded with context -> (B,3,S,S) model crops, rotated by
    ``angle_degrees`` and optionally mirrored. At 0 degrees: the training 'none' crop."""
    b = batch.shape[0]
    angle = torch.full((b,), math.radians(angle_degrees))
    flip_x = torch.full((b,), -1.0 if mirrored else 1.0)
    return _resample(batch, preprocess, angle, flip_x, torch.ones(b), torch.ones(b),
                     torch.zeros(b, 2))


def views(tta: bool) -> tuple:
    """The (angle, mirrored) views averaged for a prediction: one, or ``TTA_VIEWS``."""
    return TTA_VIEWS if tta else ((0, False),)
