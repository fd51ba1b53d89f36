"""Do the intervals hold for galaxies of every size in their frame?

    python -m bench.interval_sizes --images DIR --labels CSV --checkpoint RUN.pt
        [--level 0.8] [--seed 0] [--json OUT]

A galaxy large in its frame looks, to automatic framing, like a cut-out made too tight, and the
intervals of tight cut-outs hold less often than they promise (docs/command-line.md). This
counts how often they hold for real galaxies by their size: on the galaxies RUN held out
(8 views), the intervals are fitted on one half and counted on the other, both ways round (as
``train.calibrate`` measures them), and the counts are grouped by each galaxy's isophotal
half-light radius ``r50`` in its frame (``galaxy_core.framing.find_source``), in bins cut at
the 50th, 75th, 90th and 95th percentiles of these galaxies' ``r50``.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.intervals import held_out
from galaxy_core.data import image_path, read_labels
from galaxy_core.files import write_json
from galaxy_core.framing import find_source
from galaxy_core.images import decoded_rgb
from galaxy_core.uncertainty import LEVEL, cross_fitted_cells
from train.common import run_cli, setup_logging

PERCENTILES = (50, 75, 90, 95)


def half_light_radii(images: str, galaxy_ids) -> np.ndarray:
    """Each galaxy's ``r50`` as a share of its frame's side (NaN: no source found)."""
    radii = []
    for galaxy_id in galaxy_ids:
        source = find_source(decoded_rgb(image_path(images, galaxy_id)))
        radii.append(source.r50 if source is not None else np.nan)
    return np.array(radii)


def by_size(preds, targets, r50, level: float = LEVEL, seed: int = 0) -> list[dict]:
    """Cross-fitted coverage, mean width and RMSE of the galaxies in each ``r50`` bin."""
    rows, inside, width, known = cross_fitted_cells(preds, targets, level, seed=seed)
    radius, error = r50[rows], (preds - targets)[rows]
    found = ~np.isnan(radius)
    edges = ([0.0] + [float(np.percentile(radius[found], p)) for p in PERCENTILES] + [np.inf]
             if found.any() else [])
    bins = [(f"{low:.3f}-{high:.3f}" if np.isfinite(high) else f"above {low:.3f}",
             found & (radius >= low) & (radius < high)) for low, high in zip(edges, edges[1:])]
    bins.append(("no source found", ~found))
    out = []
    for name, members in bins:
        cells_known = known & members[:, None]
        n = int(cells_known.sum())
        out.append({"r50": name, "galaxies": int(members.sum()), "cells": n,
                    "coverage": float(inside[cells_known].mean()) if n else None,
                    "mean_width": float(width[cells_known].mean()) if n else None,
                    "rmse": float(np.sqrt(np.mean(error[cells_known] ** 2))) if n else None})
    return [row for row in out if row["galaxies"]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interval_sizes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--checkpoint", required=True, help="a run that records its held-out "
                                                            "galaxies (train.train's last.pt)")
    parser.add_argument("--level", type=float, default=LEVEL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    setup_logging()
    table = read_labels(args.labels)
    ids, preds, targets = held_out(args.checkpoint, args.images, args.labels, table)
    rows = by_size(preds, targets, half_light_radii(args.images, ids), args.level, args.seed)
    print(f"{len(ids)} held-out galaxies of {args.checkpoint}, 8 views; {args.level:.0%} "
          f"intervals fitted on one half and counted on the other, by r50 (share of the side):")
    print(f"{'r50':>16s} {'galaxies':>9s} {'coverage':>9s} {'width':>7s} {'RMSE':>7s}")
    for row in rows:
        numbers = (f"{row['coverage']:9.1%} {row['mean_width']:7.3f} {row['rmse']:7.4f}"
                   if row["cells"] else f"{'-':>9s} {'-':>7s} {'-':>7s}")
        print(f"{row['r50']:>16s} {row['galaxies']:9d} {numbers}")
    if args.json:
        write_json(args.json, {"checkpoint": args.checkpoint, "level": args.level, "rows": rows})
    return 0


if __name__ == "__main__":
    run_cli(main)
