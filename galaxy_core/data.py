"""Galaxy Zoo data in the Kaggle layout: a labels CSV and a folder of ``<GalaxyID>.jpg``.

Targets are always 37 wide in Kaggle order; answers a CSV does not have (or leaves empty)
are NaN, and every loss and metric masks NaN out instead of reading it as 0.

``GalaxyZooDataset`` is the seed's dataset class (labelled: image, targets; unlabelled: image,
galaxy_id). ``decode_images`` fills a uint8 cache once (in worker processes, optionally on
disk for reuse) so training is bound by the model, not by JPEG decoding.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from .config import Preprocess
from .files import replacing
from .images import ImageError, normalize, prepare_for_model, prepare_views
from .schema import ANSWER_COLUMNS, COLUMN_INDEX, ID_COLUMN, NUM_ANSWERS

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".fits", ".fit",
                    ".fts", ".fz")


class DataError(ValueError):
    """A labels file or image folder that cannot be used, with a message fit to show a user."""


@dataclass(frozen=True)
class LabelTable:
    galaxy_ids: np.ndarray  # (N,) int64
    targets: np.ndarray  # (N, 37) float32, NaN where unknown
    columns: tuple[str, ...]  # the answer columns the CSV provided, Kaggle order

    def __len__(self):
        return len(self.galaxy_ids)

    def subset(self, index) -> "LabelTable":
        return LabelTable(self.galaxy_ids[index], self.targets[index], self.columns)


def read_labels(path) -> LabelTable:
    """Read a Kaggle-style labels CSV holding any subset of the 37 answer columns."""
    if not os.path.isfile(path):
        raise DataError(f"labels file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        # the reason only, never the file's text: a labels path may name any file
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "malformed rows"
        raise DataError(f"{path}: not a readable CSV ({reason})") from exc
    if ID_COLUMN not in frame.columns:
        raise DataError(f"{path}: no {ID_COLUMN} column, so not a labels file (Kaggle "
                        f"layout: {ID_COLUMN},Class1.1,...)")
    answer_columns = [c for c in frame.columns if c != ID_COLUMN]
    unknown = [c for c in answer_columns if c not in COLUMN_INDEX]
    if unknown:
        raise DataError(f"{path}: {len(unknown)} column(s) that are not Kaggle answer "
                        f"columns; allowed are {ID_COLUMN} and Class1.1 ... Class11.6")
    if not answer_columns:
        raise DataError(f"{path}: no answer columns (Class1.1 ... Class11.6)")
    ids = pd.to_numeric(frame[ID_COLUMN], errors="coerce")
    if ids.isna().any() or (ids % 1 != 0).any():
        row = int(np.flatnonzero((ids.isna() | (ids % 1 != 0)).to_numpy())[0]) + 2
        raise DataError(f"{path}: {ID_COLUMN} must be whole numbers (line {row} is not)")
    if ids.duplicated().any():
        raise DataError(f"{path}: duplicate {ID_COLUMN} {int(ids[ids.duplicated()].iloc[0])}")
    values = frame[answer_columns].apply(pd.to_numeric, errors="coerce")
    bad_cells = values.isna() & frame[answer_columns].notna()
    if bad_cells.any().any():
        column = bad_cells.any().idxmax()
        raise DataError(f"{path}: column {column} holds a non-numeric value")
    if ((values < -1e-6) | (values > 1 + 1e-6)).any().any():
        raise DataError(f"{path}: answer values must lie in [0, 1]")
    if frame.empty:
        raise DataError(f"{path}: no galaxies (the file has a header and no rows)")
    # a column left entirely empty gives no targets: it is not among the answers provided
    empty = [c for c in answer_columns if values[c].isna().all()]
    if len(empty) == len(answer_columns):
        raise DataError(f"{path}: every cell of its {len(answer_columns)} answer column(s) "
                        f"is empty; targets need at least one known answer value")
    if empty:
        log.warning("%s: %d answer column(s) hold no value and are left out: %s", path,
                    len(empty), ", ".join(empty))
    targets = np.full((len(frame), NUM_ANSWERS), np.nan, dtype=np.float32)
    for column in answer_columns:
        targets[:, COLUMN_INDEX[column]] = values[column].to_numpy(dtype=np.float32)
    ordered = tuple(c for c in ANSWER_COLUMNS if c in answer_columns and c not in empty)
    return LabelTable(ids.to_numpy(dtype=np.int64), targets, ordered)


def image_path(images_dir, galaxy_id) -> str:
    """``<GalaxyID>.jpg`` in ``images_dir`` (the Kaggle layout), or the same name with another
    image extension (``.png``, ...) when only that one exists."""
    default = os.path.join(images_dir, f"{galaxy_id}.jpg")
    if os.path.isfile(default):
        return default
    for extension in IMAGE_EXTENSIONS[1:]:
        candidate = os.path.join(images_dir, f"{galaxy_id}{extension}")
        if os.path.isfile(candidate):
            return candidate
    return default


def list_images(folder) -> list[str]:
    """Image files in ``folder`` (not recursive), sorted by name. Hidden files are skipped: a
    file being written (``galaxy_core.files``) or macOS's ``._name.jpg`` metadata is no image."""
    if not os.path.isdir(folder):
        raise DataError(f"image folder not found: {folder}")
    names = sorted(n for n in os.listdir(folder)
                   if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))
    return [os.path.join(folder, n) for n in names]


def check_images_exist(images_dir, galaxy_ids) -> None:
    if not os.path.isdir(images_dir):
        raise DataError(f"image folder not found: {images_dir}")
    missing = [g for g in galaxy_ids if not os.path.isfile(image_path(images_dir, g))]
    if missing:
        raise DataError(f"{len(missing)} labelled galaxies have no image in {images_dir}, "
                        f"e.g. {image_path(images_dir, missing[0])}")


def select_subset(table: LabelTable, size: int, mode: str, seed: int) -> LabelTable:
    """First ``size`` rows, or a seeded random ``size``; size 0 keeps everything. A subset
    without a single known answer cell is refused (there would be nothing to learn or score)."""
    if size <= 0 or size >= len(table):
        return table
    if mode == "first":
        chosen = table.subset(np.arange(size))
    elif mode == "random":
        chosen = table.subset(np.sort(np.random.default_rng(seed).choice(len(table), size,
                                                                         replace=False)))
    else:
        raise ValueError(f"subset mode must be 'first' or 'random', got {mode!r}")
    if np.isnan(chosen.targets).all():
        raise DataError(f"the {mode} {size} of {len(table)} galaxies have no known answer "
                        f"cell; choose a larger subset")
    return chosen


def split_train_val(table: LabelTable, val_fraction: float, seed: int,
                    train_fraction: float = 1.0):
    """Deterministic split by a seeded permutation of GalaxyIDs (independent of row order).

    ``train_fraction`` < 1 keeps only that share of the training galaxies, for learning curves:
    the validation galaxies stay the same, and a smaller fraction's training galaxies are a
    subset of a larger one's (the permutation is cut, not redrawn).
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    order = np.argsort(table.galaxy_ids, kind="stable")
    shuffled = order[np.random.default_rng(seed).permutation(len(order))]
    n_val = max(1, int(round(len(table) * val_fraction))) if val_fraction > 0 else 0
    if n_val >= len(table):
        raise DataError(f"val_fraction {val_fraction} leaves no training galaxies "
                        f"out of {len(table)}")
    training = shuffled[n_val:]
    if train_fraction < 1.0:
        training = training[:max(1, int(round(len(training) * train_fraction)))]
    return table.subset(np.sort(training)), table.subset(np.sort(shuffled[:n_val]))


def split_sizes(table: LabelTable, subset: int, subset_mode: str, seed: int,
                val_fraction: float, train_fraction: float = 1.0) -> tuple[int, int]:
    """(training, validation) galaxies that a run with these settings gets, as ``fit`` draws
    them; a ``DataError`` saying why when the run could not train (checked before it starts)."""
    chosen = select_subset(table, subset, subset_mode, seed)
    training, validation = split_train_val(chosen, val_fraction, seed, train_fraction)
    if len(training) < 2:
        raise DataError(f"these settings leave {len(training)} training galaxy (of "
                        f"{len(chosen)}, {len(validation)} held out for validation); at least 2 "
                        f"are needed: use a larger subset or a smaller validation fraction")
    return len(training), len(validation)


class GalaxyZooDataset(Dataset):
    """The seed's dataset: labelled -> (image, targets (37,) NaN=unknown); else (image, galaxy_id).

    Images go through the eval transform of ``preprocess`` (float, normalised). ``paths`` lets
    an unlabelled dataset read any list of files; their ``galaxy_id`` is the file name stem.
    """

    def __init__(self, images_dir=None, labels=None, preprocess: Preprocess = Preprocess(),
                 paths=None, normalized: bool = True):
        self.preprocess = preprocess
        self.normalized = normalized
        self.table = None
        if labels is not None:
            self.table = labels if isinstance(labels, LabelTable) else read_labels(labels)
            check_images_exist(images_dir, self.table.galaxy_ids)
            self.paths = [image_path(images_dir, g) for g in self.table.galaxy_ids]
            self.ids = [str(g) for g in self.table.galaxy_ids]
        else:
            self.paths = list(paths) if paths is not None else list_images(images_dir)
            self.ids = [os.path.splitext(os.path.basename(p))[0] for p in self.paths]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        image = prepare_for_model(self.paths[index], self.preprocess)
        if self.normalized:
            image = normalize(image.unsqueeze(0), self.preprocess)[0]
        if self.table is not None:
            return image, torch.from_numpy(self.table.targets[index])
        return image, self.ids[index]


class DecodeJob(Dataset):
    """Decodes image ``i`` of ``sources`` (paths or bytes), in a DataLoader worker or a
    decoding thread, into (image, i, error, frame, wide): ``frame`` is the ``framing.Frame`` the
    image was cut with (None without ``framing``), so what is judged later is what the model
    saw, and ``wide`` the wider square half of its test-time views see (None unless ``wide`` is
    asked for, as with the 8 views, and the frame wants one: ``Frame.wider``). An unreadable
    image yields a blank tensor and its error message instead of raising, so a batch job can
    report it and go on."""

    def __init__(self, sources, size: int, crop_fraction: float, names=None, framing=None,
                 wide: bool = False):
        self.sources, self.size, self.crop_fraction = sources, size, crop_fraction
        self.names, self.framing, self.wide = names, framing, wide

    def __len__(self):
        return len(self.sources)

    def __getitem__(self, index):
        name = self.names[index] if self.names is not None else None
        try:
            image, frame, wide = prepare_views(self.sources[index], self.size,
                                               self.crop_fraction, name, self.framing, self.wide)
            return image, index, "", frame, wide
        except ImageError as exc:
            return (torch.zeros(3, self.size, self.size, dtype=torch.uint8), index, str(exc), None,
                    None)


def collate_decoded(items):
    """(images (B,3,S,S), indices, errors, frames, wides): ``wides`` holds each image's wider
    square, or the image itself where it has none (None when no image of the batch has one)."""
    images, index, errors, frames, wides = zip(*items)
    images = torch.stack(images)
    if all(wide is None for wide in wides):
        return images, list(index), list(errors), list(frames), None
    wide = torch.stack([image if w is None else w for image, w in zip(images, wides)])
    return images, list(index), list(errors), list(frames), wide


def decode_images(paths, size: int, crop_fraction: float, workers: int = 2,
                  cache_dir: str = "", on_progress=None) -> torch.Tensor:
    """Decode every image once into uint8 (N, 3, size, size), in ``workers`` processes.

    With ``cache_dir`` the array is kept as a .npy file keyed by the paths and preprocessing,
    and reused by later runs. An unreadable image raises ``DataError`` naming it.
    """
    paths = list(paths)
    cache_file = None
    if cache_dir:
        key = hashlib.sha256(repr((paths, size, crop_fraction, 1)).encode()).hexdigest()[:16]
        cache_file = os.path.join(cache_dir, f"decoded-{size}px-{key}.npy")
        if os.path.isfile(cache_file):
            log.info("using decoded-image cache %s", cache_file)
            return torch.from_numpy(np.load(cache_file))
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    loader = DataLoader(DecodeJob(paths, size, crop_fraction), batch_size=64,
                        num_workers=workers, collate_fn=collate_decoded)
    done = 0
    for images, index, errors, _, _ in loader:
        failed = [e for e in errors if e]
        if failed:
            raise DataError(failed[0])
        out[index] = images
        done += len(index)
        if on_progress is not None:
            on_progress(done, len(paths))
    if cache_file:
        with replacing(cache_file, ".npy") as tmp:
            np.save(tmp, out.numpy())
    return out
