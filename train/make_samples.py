"""Pick sample galaxies that span the morphologies, from a labelled set's validation split.

    python -m train.make_samples --images DIR --labels CSV --out assets/samples [--count 40]

Only validation galaxies (the split ``train.train`` makes with the same --seed and
--val-fraction) are chosen, so the shipped model never trained on the samples it is shown with.
Copies the images and writes labels.csv with the columns the source has.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil

import numpy as np
import pandas as pd

from galaxy_core.data import image_path, read_labels, split_train_val
from galaxy_core.files import replacing
from galaxy_core.schema import ANSWER_COLUMNS, COLUMN_INDEX, ID_COLUMN, QUESTION_OF_COLUMN
from train.common import run_cli, setup_logging

log = logging.getLogger("make_samples")


def pick(targets: np.ndarray, count: int) -> list[int]:
    """Round-robin over answers: for each answer with targets, the next most typical galaxy."""
    known = [i for i in range(targets.shape[1]) if not np.isnan(targets[:, i]).all()]
    # rank by the answer's share of its question, so rare odd features get picked too
    shares = {}
    for i in known:
        question = QUESTION_OF_COLUMN[ANSWER_COLUMNS[i]]
        cols = [COLUMN_INDEX[c] for c in question.columns]
        total = np.nansum(targets[:, cols], axis=1)
        shares[i] = np.where(total > 0.3, targets[:, i] / np.maximum(total, 1e-9), 0.0)
    chosen, rank = [], 0
    while len(chosen) < count and rank < len(targets):
        for i in known:
            order = np.argsort(-np.nan_to_num(shares[i]), kind="stable")
            for candidate in order[rank:]:
                if candidate not in chosen:
                    chosen.append(int(candidate))
                    break
            if len(chosen) >= count:
                break
        rank += 1
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.make_samples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="the training run's split seed")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    args = parser.parse_args(argv)
    setup_logging()
    table = read_labels(args.labels)
    _, val = split_train_val(table, args.val_fraction, args.seed)
    chosen = sorted(pick(val.targets, args.count), key=lambda i: val.galaxy_ids[i])
    images_out = os.path.join(args.out, "images")
    for i in chosen:
        source = image_path(args.images, val.galaxy_ids[i])
        with replacing(os.path.join(images_out, os.path.basename(source))) as tmp:
            shutil.copyfile(source, tmp)
    frame = pd.DataFrame(val.targets[chosen][:, [COLUMN_INDEX[c] for c in table.columns]],
                         columns=list(table.columns))
    frame.insert(0, ID_COLUMN, val.galaxy_ids[chosen])
    with replacing(os.path.join(args.out, "labels.csv")) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")
    log.info("wrote %d validation galaxies to %s", len(chosen), args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
