"""Evaluate a checkpoint on a labelled set: RMSE overall, per question and per answer.

    python -m train.evaluate [--checkpoint CKPT] --images DIR --labels CSV [--json OUT] [--plots DIR]
        [--tta | --tta-json OUT_TTA] [--split val]

RMSE follows the Kaggle definition (one RMSE over all known galaxy x answer cells); answers the
labels file lacks, or leaves empty, are left out (shown as a dash). A constant-prediction baseline
is printed beside. The labels, the images and the --json / --plots outputs are checked before the
model is loaded.
"""

from __future__ import annotations

import argparse
import logging
import os

from galaxy_core.augment import TTA_VIEWS
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.data import check_images_exist, read_labels
from galaxy_core.device import select_device
from galaxy_core.evaluate import evaluate, mean_baseline, report_table, training_split
from galaxy_core.files import write_json
from galaxy_core.training import column_means
from galaxy_core.plots import save_pred_vs_true, save_question_rmse_chart
from train.common import (LazyBar, check_output_file, check_output_folder, checkpoint_or_default,
                          run_cli, setup_logging)

log = logging.getLogger("evaluate")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--images", required=True, help="folder of <GalaxyID>.jpg")
    parser.add_argument("--labels", required=True, help="labels CSV (GalaxyID + answer columns)")
    parser.add_argument("--json", help="also write the full report as JSON here")
    parser.add_argument("--plots", help="folder for a per-question chart and pred-vs-true plots")
    parser.add_argument("--tta", action="store_true", help=f"average the {TTA_VIEWS} dihedral views")
    parser.add_argument("--tta-json", metavar="OUT",
                        help=f"score both ways from one pass: --json gets the one-view report, "
                             f"this file the {TTA_VIEWS}-view average's (the first view is the "
                             f"image as it is)")
    parser.add_argument("--split", choices=("all", "val", "train"), default="all",
                        help="'val': only the galaxies the checkpoint held out for validation "
                             "(its recorded split, verified); the baseline then predicts the "
                             "training galaxies' mean")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="decoding threads")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    setup_logging()
    # every input and output is checked before the model is loaded or an image decoded
    if args.json is not None:
        check_output_file(args.json, "--json")
    if args.tta_json is not None:
        if args.tta:
            raise ValueError("--tta-json already scores the 8-view average; without --tta, "
                             "--json gets the one-view scores")
        check_output_file(args.tta_json, "--tta-json")
    if args.plots is not None:
        check_output_folder(args.plots, "--plots")
    table = read_labels(args.labels)
    check_images_exist(args.images, table.galaxy_ids)
    loaded = load_checkpoint(checkpoint_or_default(args.checkpoint), select_device(args.device))
    train_means = None
    if args.split != "all":
        train, val = training_split(loaded, args.labels, table)
        table = val if args.split == "val" else train
        train_means = column_means(train.targets)
    both = args.tta_json is not None
    with LazyBar("evaluating") as progress:
        result = evaluate(loaded, args.images, args.labels, tta=args.tta or both,
                          batch_size=args.batch_size, workers=args.workers, on_progress=progress,
                          table=table, one_view_too=both)
    baseline = mean_baseline(result, train_means)
    outputs = ([(result.one_view, args.json), (result, args.tta_json)] if both
               else [(result, args.json)])
    for evaluation, path in outputs:
        if both:
            print(f"\n{'with' if evaluation.report['tta'] else 'without'} test-time averaging:")
        print(report_table(evaluation.report, baseline))
        if path:
            write_json(path, {"model": evaluation.report, "mean_baseline": baseline,
                              "checkpoint": loaded.path, "split": args.split,
                              "epoch": loaded.meta.get("epoch"),
                              "train_config": loaded.meta.get("train_config") or {}})
            log.info("wrote %s", path)
    what = ("the training galaxies' mean answers" if train_means is not None
            else "this set's own mean answers (optimistic)")
    print(f"\n{args.split} split: {result.report['galaxies']} galaxies, "
          f"{result.report['known_cells']} known cells; mean-baseline = {what}")
    if result.report["untrained_columns_with_targets"]:
        print(f"note: the model was never trained on "
              f"{', '.join(result.report['untrained_columns_with_targets'])}")
    if args.plots:
        shown = outputs[0][0]
        save_question_rmse_chart(shown.report, os.path.join(args.plots, "rmse_per_question.png"))
        save_pred_vs_true(shown.preds, shown.targets, os.path.join(args.plots, "pred_vs_true.png"))
        log.info("wrote plots to %s", args.plots)
    return 0


if __name__ == "__main__":
    run_cli(main)
