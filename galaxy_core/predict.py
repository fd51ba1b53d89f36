"""Prediction: one image or a folder of images -> 37 probabilities (Kaggle submission format).

Images are decoded in threads while the model runs (``inference_mode``,
channels-last), optionally averaging the 8 flips/right-angle rotations (test-time
augmentation). A file that cannot be read is reported and skipped, never fatal for a batch.

``precision="bfloat16"`` is an opt-in for survey-scale runs: about 1.8x the throughput where
the hardware computes bfloat16 natively (CPUs with AVX512-BF16 or AMX, recent GPUs), at the
price of probabilities that move by a few thousandths (float32, the default, is exact).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import augment
from .checkpoint import LoadedModel
from .config import PRECISIONS
from .data import DecodeJob, collate_decoded
from .files import replacing
from .images import normalize, prepare_views
from .schema import ANSWER_COLUMNS, CSV_HEADER, ID_COLUMN

log = logging.getLogger(__name__)


@dataclass
class PredictionResult:
    frame: pd.DataFrame  # GalaxyID + 37 answer columns, in input order
    errors: list = field(default_factory=list)  # (name, message) of files that were skipped
    kept: list = field(default_factory=list)  # index into the inputs of each row of ``frame``
    # the framing.Frame each row's image was cut with (None: framing off), so a page shows, and
    # the flags judge, the region the model saw instead of choosing one anew
    frames: list = field(default_factory=list)
    views: np.ndarray | None = None  # (N, V, 37) each view's probabilities, if asked for

    def to_csv(self, path, blank_columns=()) -> str:
        return write_submission_csv(self.frame, path, blank_columns)


@torch.inference_mode()
def run_model(net, preprocess, images_uint8: torch.Tensor, tta: bool = False,
              precision: str = "float32", keep_views: bool = False,
              wide: torch.Tensor | None = None):
    """uint8 (B,3,S,S) preprocessed images -> probabilities (B, 37) as float32, eval mode.
    ``net`` is a ``GalaxyNet`` or its ``inference_copy``; outputs are clamped to [0, 1].
    ``keep_views``: return (probabilities, each view's (B, V, 37)) instead; with ``tta`` the
    first of the V = 8 views is the image as it is, so one pass scores both ways.
    ``wide``: uint8 (B,3,S,S), each image's wider square (``framing.Frame.wider``) or the image
    itself; with ``tta`` the views ``augment.WIDE_VIEWS`` see it (one view: never)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    net.eval()
    device = next(net.parameters()).device
    batch = normalize(images_uint8.to(device), preprocess)
    batch = batch.contiguous(memory_format=torch.channels_last)
    if tta and wide is not None:
        wide = normalize(wide.to(device), preprocess).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        if tta:
            views = torch.stack([net(v).float().clamp(0, 1)  # (V, B, 37)
                                 for v in augment.mixed_dihedral_views(batch, wide)])
        else:
            views = net(batch).float().clamp(0, 1)[None]
    preds = views.mean(0).cpu().numpy()
    return (preds, views.transpose(0, 1).cpu().numpy()) if keep_views else preds


def predict_tensor(loaded: LoadedModel, images_uint8: torch.Tensor, tta: bool = False,
                   precision: str = "float32", keep_views: bool = False,
                   wide: torch.Tensor | None = None):
    """``run_model`` with the shared model's BatchNorm-folded copy, one request at a time
    (two at once would only fight over the same cores)."""
    with loaded.lock:
        return run_model(loaded.fast_net, loaded.preprocess, images_uint8, tta, precision,
                         keep_views, wide)


def predict_image(loaded: LoadedModel, source, tta: bool = False, name: str | None = None,
                  framing=None) -> np.ndarray:
    """One image (path, bytes or file object) -> probabilities (37,). Raises ``ImageError``."""
    image, _, wide = prepare_views(source, loaded.preprocess.image_size,
                                   loaded.preprocess.crop_fraction, name, framing, wide=tta)
    return predict_tensor(loaded, image.unsqueeze(0), tta,
                          wide=None if wide is None else wide.unsqueeze(0))[0]


def galaxy_id_of(name: str) -> str:
    return os.path.splitext(os.path.basename(str(name)))[0]


def decoded_batches(job: DecodeJob, batch_size: int, threads: int, ahead: int = 4):
    """Yield ``job``'s items collated in batches, in order, decoding up to ``ahead`` batches
    ahead in ``threads`` threads (0: in this thread). Pillow releases the GIL while it decodes
    and resizes, so threads overlap decoding with the model without the start-up and copying
    costs of worker processes; memory stays bounded by ``ahead`` batches."""
    def decode(start):
        return collate_decoded([job[i] for i in range(start, min(start + batch_size, len(job)))])

    starts = iter(range(0, len(job), batch_size))
    if threads <= 0:
        yield from (decode(start) for start in starts)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        pending = deque(pool.submit(decode, start) for start in itertools.islice(starts, ahead))
        while pending:
            batch = pending.popleft().result()
            following = next(starts, None)
            if following is not None:
                pending.append(pool.submit(decode, following))
            yield batch


def predict_files(loaded: LoadedModel, sources, names=None, batch_size: int = 32,
                  tta: bool = False, workers: int = 1, on_progress=None,
                  precision: str = "float32", framing=None,
                  keep_views: bool = False) -> PredictionResult:
    """Predict many images (paths, or bytes with ``names``); GalaxyID = file name stem.
    ``framing`` (``framing.FramingStats``): frame each galaxy as the training images first.
    ``keep_views``: also return each view's probabilities (``run_model``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    sources = list(sources)
    names = list(names) if names is not None else [str(s) for s in sources]
    if len(names) != len(sources):
        raise ValueError(f"{len(sources)} images but {len(names)} names")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    job = DecodeJob(sources, loaded.preprocess.image_size, loaded.preprocess.crop_fraction, names,
                    framing, wide=tta)
    pin = loaded.device.type == "cuda"
    rows, views, ids, kept, frames, errors, done = [], [], [], [], [], [], 0
    if on_progress is not None and sources:
        on_progress(0, len(sources))  # a progress bar's clock starts before the first batch
    for images, index, failures, chosen, wide in decoded_batches(job, batch_size, workers):
        good = [i for i, e in enumerate(failures) if not e]
        errors += [(names[index[i]], e) for i, e in enumerate(failures) if e]
        if good:
            images, wide = images[good], None if wide is None else wide[good]
            if pin:  # after the indexing, which would copy into unpinned memory
                images = images.pin_memory()
                wide = None if wide is None else wide.pin_memory()
            out = predict_tensor(loaded, images, tta, precision, keep_views, wide)
            if keep_views:
                out, batch_views = out
                views.append(batch_views)
            rows.append(out)
            ids += [galaxy_id_of(names[index[i]]) for i in good]
            kept += [index[i] for i in good]
            frames += [chosen[i] for i in good]
        done += len(index)
        if on_progress is not None:
            on_progress(done, len(sources))
    for name, message in errors:
        log.warning("skipped %s", message)
    values = np.concatenate(rows) if rows else np.zeros((0, len(ANSWER_COLUMNS)), np.float32)
    frame = pd.DataFrame(values, columns=list(ANSWER_COLUMNS))
    frame.insert(0, ID_COLUMN, ids)
    if keep_views:
        views = (np.concatenate(views) if views else
                 np.zeros((0, augment.TTA_VIEWS if tta else 1, len(ANSWER_COLUMNS)), np.float32))
    return PredictionResult(frame=frame, errors=errors, kept=kept, frames=frames,
                            views=views if keep_views else None)


def write_submission_csv(frame: pd.DataFrame, path, blank_columns=()) -> str:
    """Write the exact Kaggle header ``GalaxyID,Class1.1,...,Class11.6``, atomically."""
    if list(frame.columns) != list(CSV_HEADER):
        raise ValueError("prediction table must have the Kaggle columns in order")
    out = frame.copy()
    for column in blank_columns:
        out[column] = np.nan
    with replacing(path) as tmp:
        out.to_csv(tmp, index=False, float_format="%.6f")
    return path


def submission_csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, float_format="%.6f").encode()
