"""Evaluate a checkpoint on a labelled set: RMSE overall, per question and per answer.

    python -m train.evaluate [--checkpoint CKPT] --images DIR --labels CSV [--json OUT] [--plots DIR]

RMSE follows the Kaggle definition (one RMSE over all known galaxy x answer cells); answers the
labels file lacks, or leaves empty, are left out. A constant-prediction baseline is printed beside.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.device import select_device
from galaxy_core.evaluate import evaluate, mean_baseline, report_table
from galaxy_core.plots import save_pred_vs_true, save_question_rmse_chart
from train.common import LazyBar, checkpoint_or_default, run_cli, setup_logging

log = logging.getLogger("evaluate")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--images", required=True, help="folder of <GalaxyID>.jpg")
    parser.add_argument("--labels", required=True, help="labels CSV (GalaxyID + answer columns)")
    parser.add_argument("--json", help="also write the full report as JSON here")
    parser.add_argument("--plots", help="folder for a per-question chart and pred-vs-true plots")
    parser.add_argument("--tta", action="store_true", help="average the 8 dihedral views")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    setup_logging()
    loaded = load_checkpoint(checkpoint_or_default(args.checkpoint), select_device(args.device))
    with LazyBar("evaluating") as progress:
        result = evaluate(loaded, args.images, args.labels, tta=args.tta,
                          batch_size=args.batch_size, workers=args.workers, on_progress=progress)
    baseline = mean_baseline(result)
    print(report_table(result.report, baseline))
    print(f"\n{result.report['galaxies']} galaxies, {result.report['known_cells']} known cells; "
          f"mean-baseline = this set's own mean answer for every galaxy (optimistic)")
    if result.report["untrained_columns_with_targets"]:
        print(f"note: the model was never trained on "
              f"{', '.join(result.report['untrained_columns_with_targets'])}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"model": result.report, "mean_baseline": baseline,
                       "checkpoint": loaded.path}, handle, indent=1)
        log.info("wrote %s", args.json)
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        save_question_rmse_chart(result.report, os.path.join(args.plots, "rmse_per_question.png"))
        save_pred_vs_true(result.preds, result.targets, os.path.join(args.plots, "pred_vs_true.png"))
        log.info("wrote plots to %s", args.plots)
    return 0


if __name__ == "__main__":
    run_cli(main)
