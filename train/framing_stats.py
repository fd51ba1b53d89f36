"""Measure the training images, for automatic framing and the "unlike the training images"
flags: how the galaxies fill their frames, and the range of each image measure.

    python -m train.framing_stats --images DIR --labels CSV [--val-fraction 0.2 --seed 0]
        [--out assets/models/framing_stats.json] [--quality-out assets/models/quality_ranges.json]

Only the training part of the split is measured (the same split ``train.train`` draws with
that validation fraction and seed), so a framing report on the validation galaxies is fair.
"""

from __future__ import annotations

import argparse
import json
import logging

from galaxy_core.data import image_path, read_labels, split_train_val
from galaxy_core.files import write_json
from galaxy_core.framing import STATS_FILE, measure
from galaxy_core.images import open_image
from galaxy_core.quality import RANGES_FILE, measures, ranges
from train.common import LazyBar, check_output_file, run_cli, setup_logging

log = logging.getLogger("framing_stats")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.framing_stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="folder of <GalaxyID>.jpg")
    parser.add_argument("--labels", required=True, help="labels CSV (for the GalaxyIDs)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="validation share left out of the measurement (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--out", default=STATS_FILE, help=f"JSON to write (default {STATS_FILE})")
    parser.add_argument("--quality-out", default=RANGES_FILE,
                        help=f"JSON of the flags' ranges (default {RANGES_FILE})")
    args = parser.parse_args(argv)
    setup_logging()
    check_output_file(args.out)
    check_output_file(args.quality_out, "--quality-out")
    training, _ = split_train_val(read_labels(args.labels), args.val_fraction, args.seed)
    paths = [image_path(args.images, g) for g in training.galaxy_ids]

    seen = []

    def images():
        with LazyBar("measuring") as progress:
            for done, path in enumerate(paths, 1):
                image = open_image(path).convert("RGB")
                values = measures(image)
                if values is not None:
                    seen.append(values)
                yield image
                progress(done, len(paths))

    stats = measure(images())
    write_json(args.quality_out, {"ranges": ranges(seen), "images": len(seen),
                                  "source": f"the training part of {args.labels.split('/')[-1]}"
                                            f" (validation fraction {args.val_fraction}, seed "
                                            f"{args.seed})"})
    record = {**stats.to_json(), "source": f"{stats.source}: the training part of "
              f"{args.labels.split('/')[-1]} (validation fraction {args.val_fraction}, seed "
              f"{args.seed})"}
    write_json(args.out, record)
    log.info("%s", json.dumps(record))
    return 0


if __name__ == "__main__":
    run_cli(main)
