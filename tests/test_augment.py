"""Training augmentation: 'reframe' shows the model galaxies framed as uploads are (smaller,
larger, off centre), with sky where the view leaves the frame; 'full' keeps the framing."""

import numpy as np
import pytest
import torch

from galaxy_core.augment import (AUGMENT_DESCRIPTIONS, augment_batch, context_fraction,
                                 context_size)
from galaxy_core.config import AUGMENTS, Preprocess

PREPROCESS = Preprocess(image_size=32, crop_fraction=0.5)


def blobs(n: int, side: int, sky: float = 0.2) -> torch.Tensor:
    """(n,3,side,side) a bright round galaxy in the middle of a noisy sky level ``sky``."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) - (side - 1) / 2
    blob = np.exp(-(x ** 2 + y ** 2) / (2 * (side / 16) ** 2))
    rng = np.random.default_rng(0)
    image = sky + 0.7 * blob[None, None] + rng.normal(0, 0.01, (n, 3, side, side))
    return torch.from_numpy(image.astype(np.float32)).clamp(0, 1)


def bright_share(views: torch.Tensor) -> np.ndarray:
    """Per view, the share of pixels above half the blob's light: how large the galaxy looks."""
    return (views.mean(dim=1) > 0.55).float().mean(dim=(1, 2)).numpy()


def test_every_mode_is_described_and_reframe_caches_the_whole_frame():
    assert set(AUGMENT_DESCRIPTIONS) == set(AUGMENTS)
    assert context_fraction(PREPROCESS, "reframe") == 1.0
    assert context_size(PREPROCESS, "reframe") == 64  # the whole frame at the crop's scale
    assert context_fraction(PREPROCESS, "full") < 1.0


def test_reframe_varies_the_galaxys_size_and_fills_beyond_the_frame_with_sky():
    generator = torch.Generator().manual_seed(0)
    cached = blobs(256, context_size(PREPROCESS, "reframe"))
    views = augment_batch(cached, PREPROCESS, "reframe", generator)
    assert views.shape == (256, 3, 32, 32)
    # no black corners: where a wide view leaves the frame it shows noise at the sky's level
    assert float(views.min()) > 0.1
    corners = torch.cat([views[:, :, :3, :3], views[:, :, -3:, -3:]]).mean()
    assert float(corners) == pytest.approx(0.2, abs=0.03)
    shares = bright_share(views)
    framed = bright_share(augment_batch(blobs(256, context_size(PREPROCESS, "full")), PREPROCESS,
                                        "full", torch.Generator().manual_seed(0)))
    # 'full' zooms by at most 1.1x either way; 'reframe' shrinks and enlarges up to 2x
    assert np.percentile(framed, 95) / np.percentile(framed, 5) < 1.6
    assert np.percentile(shares, 95) / np.percentile(shares, 5) > 4
    assert (shares == 0).mean() < 0.05  # shifted, never out of the view


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="reframe"):
        augment_batch(blobs(2, 64), PREPROCESS, "zoom", None)
