"""Calibrate per-answer uncertainty intervals on held-out galaxies and store them in a model.

    python -m train.calibrate --checkpoint RUN/last.pt [RUN2/last.pt ...] --images DIR
        --labels CSV [--into MODEL.pt] [--match-heldout EVAL_JSON] [--level 0.8] [--json OUT]

Each checkpoint must record the split it was trained with: its validation galaxies (never
trained on) are predicted as the app does (8 views averaged), and each learned answer gets a
split-conformal quantile of the scaled residuals of all of them together
(``galaxy_core/uncertainty.py``). Coverage is measured on those same galaxies without using
them twice: fitted on one half, measured on the other, both ways round. The intervals go into
``--into`` (default: the one checkpoint given), replaced atomically; its weights are not
touched.

``--into`` another model (say, the shipped model, trained on every galaxy, so it has none held
out) borrows the calibration of runs of its recipe (``make model`` passes its three split runs).
``--match-heldout`` (one run only) then scales each answer's quantile by (the recipe's held-out
RMSE for the answer, from ``train.evaluate --split val --json`` on the same split) / (this
run's), for a calibration run shorter than the recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

import numpy as np

from galaxy_core.augment import TTA_VIEWS
from galaxy_core.checkpoint import load_checkpoint, read_checkpoint, save_synced
from galaxy_core.data import DataError, check_images_exist, read_labels
from galaxy_core.device import select_device
from galaxy_core.evaluate import evaluate, training_split
from galaxy_core.files import replacing, write_json
from galaxy_core.schema import answer_name
from galaxy_core.uncertainty import (LEVEL, SCALES, Calibration, coverage_rows,
                                     cross_fitted_coverage, fit, learned_targets)
from train.common import LazyBar, check_output_file, read_json, run_cli, setup_logging

log = logging.getLogger("calibrate")

MIN_GALAXIES = 4  # the fewest for which a finite 80% quantile exists (ceil(0.8 (n + 1)) <= n)


def matched_quantiles(calibration: Calibration, own_rmse: dict, heldout: dict,
                      run_config: dict) -> tuple[dict, dict]:
    """Scale each quantile by the recipe's held-out RMSE over this run's, answer by answer;
    refuse an evaluation of another split (the two RMSEs must be on the same galaxies)."""
    if heldout.get("split") != "val":
        raise DataError("--match-heldout must be a `train.evaluate --split val` report")
    theirs = heldout.get("train_config") or {}
    for key in ("seed", "val_fraction", "subset", "subset_mode"):
        if theirs.get(key) != run_config.get(key):
            raise DataError(f"--match-heldout was scored on another split than this run's "
                            f"({key}: {theirs.get(key)!r} there, {run_config.get(key)!r} here)")
    per_answer = (heldout.get("model") or {}).get("per_answer") or {}
    ratios = {}
    for column in calibration.quantiles:
        if not per_answer.get(column) or not own_rmse.get(column):
            raise DataError(f"--match-heldout has no held-out RMSE for {column}")
        ratios[column] = per_answer[column] / own_rmse[column]
    return {c: q * ratios[c] for c, q in calibration.quantiles.items()}, ratios


def coverage_table(report: dict) -> str:
    lines = [f"{'':24s} {'coverage':>9s} {'mean width':>11s} {'n':>6s}"]
    for name, row in coverage_rows(report):
        lines.append(f"{name:24s} {row['coverage']:9.1%} {row['mean_width']:11.3f} "
                     f"{row['n']:6d}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, nargs="+",
                        help="training runs' checkpoints that record their validation split")
    parser.add_argument("--images", required=True, help="folder of <GalaxyID>.jpg")
    parser.add_argument("--labels", required=True, help="the labels CSV the run was trained on")
    parser.add_argument("--into", help="model to store the intervals in (default: --checkpoint)")
    parser.add_argument("--match-heldout", metavar="EVAL_JSON",
                        help="scale the quantiles to the recipe's held-out RMSE on this split")
    parser.add_argument("--level", type=float, default=LEVEL,
                        help=f"nominal coverage of each interval (default {LEVEL})")
    parser.add_argument("--scale", choices=SCALES, default="binomial",
                        help="residual unit: sqrt(p(1-p)) + floor (default) or constant")
    parser.add_argument("--json", help="also write the calibration and its coverage here")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="decoding threads")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    setup_logging()
    if not 0 < args.level < 1:
        raise ValueError(f"--level must be between 0 and 1, got {args.level}")
    if args.json is not None:
        check_output_file(args.json, "--json")
    if args.into is None and len(args.checkpoint) > 1:
        raise ValueError("with several --checkpoint runs, say which model gets the intervals "
                         "with --into")
    if args.match_heldout and len(args.checkpoint) > 1:
        raise ValueError("--match-heldout scales one run's quantiles: give one --checkpoint")
    into = args.into or args.checkpoint[0]
    load_checkpoint(into)  # a target that is not a model is refused before any work
    heldout = read_json(args.match_heldout) if args.match_heldout else None
    table = read_labels(args.labels)
    check_images_exist(args.images, table.galaxy_ids)
    device = select_device(args.device)
    runs = [load_checkpoint(path, device) for path in args.checkpoint]
    preds, targets, names, galaxies = [], [], [], set()
    for run in runs:
        _, val = training_split(run, args.labels, table)
        # splits of one sample overlap: a galaxy two runs held out counts once (the first's)
        val = val.subset([i for i, g in enumerate(val.galaxy_ids) if g not in galaxies])
        galaxies |= set(val.galaxy_ids)
        if not len(val):
            continue
        with LazyBar(f"predicting the galaxies {os.path.basename(os.path.dirname(run.path))} "
                     f"held out") as progress:
            result = evaluate(run, args.images, args.labels, tta=True,
                              batch_size=args.batch_size, workers=args.workers,
                              on_progress=progress, table=val)
        preds.append(result.preds)
        targets.append(learned_targets(result.targets, run.trained_columns))
        names.append(f"{os.path.basename(os.path.dirname(run.path))} (epoch "
                     f"{run.meta.get('epoch')})")
    preds, targets = np.concatenate(preds), np.concatenate(targets)
    if len(preds) < MIN_GALAXIES:
        raise DataError(f"the runs held out {len(preds)} galaxies; calibration needs at least "
                        f"{MIN_GALAXIES} (and is only as good as their number: use hundreds)")
    reports = {scale: cross_fitted_coverage(preds, targets, args.level, scale)
               for scale in SCALES}
    for scale, report in reports.items():  # side by side: the stored one should be narrower
        print(f"\n{scale} scale, nominal {args.level:.0%}, fitted on one half of {len(preds)} "
              f"held-out galaxies, measured on the other:\n{coverage_table(report)}")
    source = (f"{len(preds)} galaxies held out by {', '.join(names)}, {TTA_VIEWS} views "
              f"averaged")
    calibration = fit(preds, targets, args.level, args.scale, source=source)
    ratios = None
    if heldout is not None:
        quantiles, ratios = matched_quantiles(calibration, result.report["per_answer"], heldout,
                                              runs[0].meta.get("train_config") or {})
        source += (f", scaled per answer to the held-out RMSE of "
                   f"{os.path.basename(args.match_heldout)} (mean factor "
                   f"{np.mean(list(ratios.values())):.3f})")
        calibration = dataclasses.replace(calibration, quantiles=quantiles, source=source)
    calibration = dataclasses.replace(calibration, coverage=reports[args.scale])
    raw = read_checkpoint(into)
    raw["intervals"] = calibration.to_dict()
    with replacing(into, ".pt") as tmp:  # the old file stays if the new one does not load
        save_synced(raw, tmp)
        load_checkpoint(tmp)
    print(f"\nstored {args.level:.0%} intervals for {len(calibration.quantiles)} answers in "
          f"{into}")
    for column in calibration.columns:
        extra = f"  (x{ratios[column]:.3f})" if ratios else ""
        print(f"  {answer_name(column):40s} q = {calibration.quantiles[column]:.3f}{extra}")
    if args.json:
        write_json(args.json, {**calibration.to_dict(),
                               "checkpoints": [run.path for run in runs],
                               "run_rmse_per_answer": (result.report["per_answer"]
                                                       if len(runs) == 1 else None)})
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    run_cli(main)
