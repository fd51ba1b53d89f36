"""Compare training recipes on the same split and seed, at a reduced budget, into one JSON.

    python -m train.compare --images DIR --labels CSV --out runs/compare [--epochs 12 --image-size 64]

Each variant adds one change to the one before, from the seed's recipe to the shipped one, so
the table shows what each change is worth. Writes variants.json (the model card reads it).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time

from galaxy_core.config import TrainConfig
from galaxy_core.files import write_json
from galaxy_core.training import fit
from train.common import run_cli, setup_logging

log = logging.getLogger("compare")

# (name, overrides of TrainConfig), each building on the previous one
VARIANTS = [
    ("seed recipe: full frame, hflip + 20 deg, plain head, constant lr",
     dict(crop_fraction=1.0, augment="seed", head="plain", schedule="constant", dropout=0.5)),
    ("+ centre crop 0.5", dict(crop_fraction=0.5)),
    ("+ any rotation, flips, zoom", dict(augment="full")),
    ("+ one-cycle lr schedule", dict(schedule="onecycle")),
    ("+ decision-tree head", dict(head="tree")),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--cache-dir", default="")
    args = parser.parse_args(argv)
    setup_logging()
    settings, results = {}, []
    for i, (name, overrides) in enumerate(VARIANTS):
        settings.update(overrides)
        config = TrainConfig(images=args.images, labels=args.labels,
                             out=os.path.join(args.out, f"variant{i}"), epochs=args.epochs,
                             image_size=args.image_size, cache_dir=args.cache_dir,
                             overwrite=True, **settings)  # a rerun replaces its own runs
        started = time.perf_counter()
        result = fit(config)
        best = min(h["val_rmse"] for h in result.history)
        results.append({"name": name, "epochs": args.epochs, "image_size": args.image_size,
                        "best_val_rmse": best, "minutes": (time.perf_counter() - started) / 60,
                        "config": dataclasses.asdict(config)})
        log.info("%-70s best val RMSE %.4f", name, best)
    write_json(os.path.join(args.out, "variants.json"), results)
    return 0


if __name__ == "__main__":
    run_cli(main)
