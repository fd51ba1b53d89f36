"""Predict the 37 answer probabilities for a folder (or list) of images, as a Kaggle CSV.

    python -m train.predict [--checkpoint CKPT] --images DIR_OR_FILES... --out CSV [--no-tta]
        [--precision bfloat16] [--flags FLAGS_CSV] [--intervals INTERVALS_CSV]
    torchrun --nproc-per-node N -m train.predict ...   (each process takes a share; rank 0 writes)

The CSV has the exact Kaggle submission header GalaxyID,Class1.1,...,Class11.6 with
GalaxyID taken from each file name. Unreadable files are skipped and listed; when none can be
read, nothing is written (an existing CSV keeps its predictions) and the exit code is 2. The
output is checked before the model is loaded: a folder, an empty name or a missing or read-only
folder to write in is refused at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

import numpy as np
import pandas as pd

from galaxy_core.augment import TTA_VIEWS
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.config import PRECISIONS
from galaxy_core.data import DataError, list_images
from galaxy_core.device import bfloat16_warning
from galaxy_core.distributed import distributed_session, gather, split_evenly
from galaxy_core.files import write_text
from galaxy_core.fits import BandSet, group_band_files
from galaxy_core.framing import FRAMING_BY_DEFAULT, WIDE_PERCENTILE, WIDE_ZOOM, shipped_stats
from galaxy_core.images import ImageError, decoded_rgb
from galaxy_core.quality import flags_as_seen, shipped_ranges
from galaxy_core.predict import PredictionResult, predict_files
from galaxy_core.schema import ANSWER_COLUMNS
from galaxy_core.uncertainty import FLAGS_COLUMN, interval_table
from train.common import (LazyBar, check_output_file, checkpoint_or_default, run_cli,
                          setup_logging)

log = logging.getLogger("predict")


def collect_images(items) -> tuple[list, list[str]]:
    """(sources, names) for ``items`` (folders and files). FITS band files of one galaxy
    (``m51_g.fits``, ``m51_r.fits``, ``m51_i.fits``) become one source, named ``m51.fits``."""
    paths = []
    for item in items:
        if os.path.isdir(item):
            paths += list_images(item)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"no such image file or folder: {item}")
    if not paths:
        raise FileNotFoundError(f"no images found in {', '.join(items)}")
    groups, singles = group_band_files(paths)
    sources = [paths[i] for i in singles] + [
        BandSet(*(paths[i] for i in index), names=tuple(paths[i] for i in index))
        for _, index in groups]
    names = [paths[i] for i in singles] + [
        os.path.join(os.path.dirname(paths[index[0]]), f"{stem}.fits") for stem, index in groups]
    return sources, names


def flags_of(sources, names, frames, crop_fraction: float) -> list[str]:
    """Why each image's view (cut with ``frames``, the prediction's; None: framing off; the
    model sees its centre ``crop_fraction``) is unlike the training cut-outs, its flags'
    messages joined ("": like them, or unreadable)."""
    ranges, found = shipped_ranges(), []
    for source, name, frame in zip(sources, names, frames, strict=True):
        try:
            flags = flags_as_seen(decoded_rgb(source, name), ranges, frame=frame,
                                  crop_fraction=crop_fraction)
        except ImageError:
            flags = []
        found.append("; ".join(f.message for f in flags))
    return found


def write_flags(path: str, galaxy_ids, flags: list[str]) -> None:
    """GalaxyID,flags for every flagged image (a header alone: none)."""
    rows = [{"GalaxyID": g, "flags": f} for g, f in zip(galaxy_ids, flags, strict=True) if f]
    write_text(path, pd.DataFrame(rows, columns=["GalaxyID", "flags"]).to_csv(index=False))
    log.info("%d of %d images flagged as unlike the training images: %s", len(rows),
             len(flags), path)


def merge_shards(shards) -> PredictionResult:
    """One result in input order from each rank's (input indices, result)."""
    if len(shards) == 1:
        return shards[0][1]
    tables, kept, errors, chosen = [], [], [], []
    for mine, part in shards:
        tables.append(part.frame)
        kept += [mine[i] for i in part.kept]
        errors += part.errors
        chosen += part.frames
    frame = pd.concat(tables, ignore_index=True)
    order = np.argsort(kept, kind="stable")
    return PredictionResult(frame=frame.iloc[order].reset_index(drop=True), errors=errors,
                            kept=sorted(kept), frames=[chosen[i] for i in order])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--images", nargs="+", required=True, help="image folder(s) or files")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                        help=f"average the {TTA_VIEWS} flips/right-angle rotations, as the app "
                             f"does (default; more accurate); --no-tta: one view, "
                             f"{TTA_VIEWS}x faster")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--workers", type=int, default=1,
                        help="decoding threads (default 1: on few cores the model needs the rest)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="bfloat16: about 1.8x faster where the CPU/GPU has native bfloat16 "
                        "(AVX512-BF16, AMX, recent GPUs); probabilities move by a few "
                        "thousandths. Default float32 (exact)")
    parser.add_argument("--frame", action=argparse.BooleanOptionalAction,
                        default=FRAMING_BY_DEFAULT,
                        help="zoom in on a galaxy far smaller in its frame than almost every "
                             "training galaxy (a wide field) before predicting, re-centre one "
                             "that leaves the middle empty, and with the 8 views let half of "
                             f"them look {WIDE_ZOOM:g}x wider at a galaxy larger in its frame "
                             f"than {WIDE_PERCENTILE}%% of training ones; others keep their "
                             "frame (default "
                             f"{'on' if FRAMING_BY_DEFAULT else 'off'}; --no-frame: never; see "
                             f"docs/command-line.md)")
    parser.add_argument("--flags", metavar="CSV",
                        help="also write GalaxyID,flags for the images unlike the training "
                             "cut-outs (too small, blank, no source near the centre, unlike in "
                             "brightness or colour) to this CSV")
    parser.add_argument("--intervals", metavar="CSV",
                        help="also write each learned answer's calibrated interval "
                             f"(GalaxyID,Class1.1_low,Class1.1_high,...,{FLAGS_COLUMN}; 80%% "
                             "of volunteer fractions fall inside on held-out galaxies) to this "
                             "CSV; an image unlike the training cut-outs gets none, and the "
                             "last column says why (the checks decode each image again: about "
                             "6 ms a cut-out)")
    parser.add_argument("--blank-untrained", action="store_true",
                        help="leave answers the model has no training targets for empty")
    args = parser.parse_args(argv)
    check_output_file(args.out, "--out")
    if args.flags:
        check_output_file(args.flags, "--flags")
    if args.intervals:
        check_output_file(args.intervals, "--intervals")
    with distributed_session(args.device) as (ctx, device):
        setup_logging(quiet=not ctx.is_main)
        loaded = load_checkpoint(checkpoint_or_default(args.checkpoint), device)
        if args.intervals and loaded.calibration is None:
            raise DataError(f"{loaded.path} carries no calibrated intervals (python -m "
                            f"train.calibrate adds them from a run's held-out galaxies)")
        if args.intervals and not args.tta:
            log.warning("the intervals were calibrated on %d-view averages; with --no-tta "
                        "they hold a little less often", TTA_VIEWS)
        if args.precision == "bfloat16" and (caution := bfloat16_warning(loaded.device)):
            log.warning(caution)
        sources, names = collect_images(args.images)
        mine = split_evenly(len(sources), ctx)  # under torchrun each rank takes a share
        with LazyBar("predicting") if ctx.is_main else contextlib.nullcontext() as progress:
            result = predict_files(loaded, [sources[i] for i in mine],
                                   names=[names[i] for i in mine], batch_size=args.batch_size,
                                   framing=shipped_stats() if args.frame else None,
                                   tta=args.tta, workers=args.workers, on_progress=progress,
                                   precision=args.precision)
        result = merge_shards(gather((mine, result), ctx))
    if not ctx.is_main:
        return 0
    if result.errors:
        print(f"skipped {len(result.errors)} unreadable file(s):", file=sys.stderr)
        for _, message in result.errors:
            print(f"  {message}", file=sys.stderr)
    if result.frame.empty:  # a header-only file must not replace earlier predictions
        kept = " (the file there is left as it was)" if os.path.exists(args.out) else ""
        raise DataError(f"none of the {len(sources)} image(s) could be read, so {args.out} was "
                        f"not written{kept}")
    result.to_csv(args.out, blank_columns=loaded.untrained_columns if args.blank_untrained else ())
    log.info("wrote %d predictions to %s", len(result.frame), args.out)
    if args.flags or args.intervals:
        flags = flags_of([sources[i] for i in result.kept], [names[i] for i in result.kept],
                         result.frames, loaded.preprocess.crop_fraction)
    if args.flags:
        write_flags(args.flags, result.frame["GalaxyID"], flags)
    if args.intervals:  # none for a flagged image: the last column says why
        table = interval_table(loaded.calibration, result.frame["GalaxyID"],
                               result.frame[list(ANSWER_COLUMNS)].to_numpy(), flags)
        write_text(args.intervals, table.to_csv(index=False, float_format="%.6f"))
        log.info("wrote %.0f%% intervals for %d answers to %s", 100 * loaded.calibration.level,
                 len(loaded.calibration.columns), args.intervals)
    if loaded.untrained_columns and not args.blank_untrained:
        log.warning("%d of 37 answers were never trained by this model (%s ...): their values "
                    "are not predictions; --blank-untrained leaves them empty",
                    len(loaded.untrained_columns), loaded.untrained_columns[0])
    return 0


if __name__ == "__main__":
    run_cli(main)
