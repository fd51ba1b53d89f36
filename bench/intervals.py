"""Do intervals borrowed from another model hold? The check behind the shipped model's intervals.

    python -m bench.intervals --images DIR --labels CSV --source RUN_A.pt --target RUN_B.pt
        [--level 0.8] [--json OUT]

The shipped model trained on every galaxy, so its intervals are calibrated on the galaxies a
shorter run of its recipe held out, each answer's quantile scaled by the ratio of the two
models' held-out RMSE (``train.calibrate --match-heldout``). This measures that step where it
can be measured: two runs that hold out the same galaxies (say, an earlier and the final epoch
of one run). The galaxies are split in two at random; on one half the source's quantiles and
both models' RMSE are fitted, and on the other half the target's predictions are counted
against three intervals: the target's own (fitted on its own residuals, the reference), the
source's as they are, and the source's scaled by the RMSE ratio; then the halves swap and the
counts are pooled. Printed per question, with the mean width.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.data import DataError, read_labels
from galaxy_core.evaluate import evaluate, training_split
from galaxy_core.files import write_json
from galaxy_core.metrics import rmse_report
from galaxy_core.uncertainty import (LEVEL, Calibration, coverage_rows, fit, halves,
                                     held_cells, learned_targets, summarise)
from train.common import LazyBar, run_cli, setup_logging


def held_out(path, images, labels, table):
    run = load_checkpoint(path)
    _, val = training_split(run, labels, table)
    with LazyBar(f"predicting {path}") as progress:
        result = evaluate(run, images, labels, tta=True, workers=1, on_progress=progress,
                          table=val)
    return result.galaxy_ids, result.preds, learned_targets(result.targets, run.trained_columns)


def scaled(calibration: Calibration, source_preds, target_preds, targets) -> Calibration:
    """The source's quantiles times target RMSE / source RMSE, answer by answer."""
    ours = rmse_report(source_preds, targets)["per_answer"]
    theirs = rmse_report(target_preds, targets)["per_answer"]
    return dataclasses.replace(calibration, quantiles={
        c: q * theirs[c] / ours[c] for c, q in calibration.quantiles.items()})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intervals", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--source", required=True, help="the run whose residuals are borrowed")
    parser.add_argument("--target", required=True, help="the run the intervals are for")
    parser.add_argument("--level", type=float, default=LEVEL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    setup_logging()
    table = read_labels(args.labels)
    ids_a, source, targets = held_out(args.source, args.images, args.labels, table)
    ids_b, target, _ = held_out(args.target, args.images, args.labels, table)
    if list(ids_a) != list(ids_b):
        raise DataError("the two runs hold out different galaxies")
    ways = {"target's own": [], "source's as they are": [], "source's scaled": []}
    for fit_rows, test_rows in halves(len(targets), args.seed):
        own = fit(target[fit_rows], targets[fit_rows], args.level)
        borrowed = fit(source[fit_rows], targets[fit_rows], args.level)
        for name, calibration in (("target's own", own), ("source's as they are", borrowed),
                                  ("source's scaled", scaled(borrowed, source[fit_rows],
                                                             target[fit_rows],
                                                             targets[fit_rows]))):
            ways[name].append(held_cells(calibration, target[test_rows], targets[test_rows]))
    reports = {name: summarise(*(np.concatenate(cells) for cells in zip(*parts)), args.level)
               for name, parts in ways.items()}
    rmse = {name: rmse_report(preds, targets)["rmse"] for name, preds in
            (("source", source), ("target", target))}
    print(f"{len(targets)} held-out galaxies; RMSE (8 views) source {rmse['source']:.4f}, "
          f"target {rmse['target']:.4f}; nominal {args.level:.0%}; coverage / mean width of "
          f"the target's intervals, fitted on one half and counted on the other:")
    print(f"{'':20s}" + "".join(f"{name:>26s}" for name in reports))
    for i, (question, _) in enumerate(coverage_rows(reports["target's own"])):
        cells = [coverage_rows(report)[i][1] for report in reports.values()]
        print(f"{question:20s}" + "".join(f"{row['coverage']:6.1%} / {row['mean_width']:.3f}"
                                           .rjust(26) for row in cells))
    if args.json:
        write_json(args.json, {"rmse": rmse, "level": args.level, "reports": reports,
                               "source": args.source, "target": args.target})
    return 0


if __name__ == "__main__":
    run_cli(main)
