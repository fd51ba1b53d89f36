"""Which galaxies should have some of their 8 views wider, and how much: the measurement behind
``framing.WIDE_PERCENTILE`` and ``framing.WIDE_ZOOM``.

    python -m bench.wide_views --checkpoint CKPT --images DIR --labels CSV [--seed 2]
        [--limit 400] [--json OUT]

A cut-out tighter than the training ones (the galaxy larger in its frame) cannot be told from a
galaxy naturally large in its frame, and zooming every view out was measured to cost the
naturally large ones more than it gains (docs/command-line.md). So each rule here leaves the frame
as automatic framing chose it and, for a galaxy whose ``r50`` is above a percentile of the
split's training galaxies, replaces some of the 8 test-time views by views of a square ``zoom``
times wider: "4+4" (the views ``augment.WIDE_VIEWS``, as the app does: no extra forward pass),
"8+8" (the mean of 8 views of each, twice the passes) or "all" (the 8 wider views alone).

On the split's validation galaxies (held out from the checkpoint), each re-framed as
``bench.framing`` does, it prints each rule's RMSE of the unchanged images and the other cases'
ratios to the default's unchanged RMSE, on the first half of the galaxies (to choose on), the
second half (to check the choice on) and all, with how many galaxies each rule widened.
"""

from __future__ import annotations

import numpy as np
import torch

from galaxy_core import augment
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.data import image_path, read_labels, split_train_val
from galaxy_core.files import write_json
from galaxy_core.framing import choose_frame, crop, find_source, shipped_stats
from galaxy_core.images import open_image
from galaxy_core.metrics import rmse_report
from galaxy_core.predict import predict_tensor
from bench.framing import CASES, held_out_parser, reframe
from train.common import checkpoint_or_default, run_cli

PERCENTILES = (75, 90, 95)
ZOOMS = (1.4, 2.0)
MODES = ("4+4", "8+8", "all")
KEPT_VIEWS = [v for v in range(augment.TTA_VIEWS) if v not in augment.WIDE_VIEWS]


def _views(loaded, images: list[torch.Tensor]) -> np.ndarray:
    """Each image's 8 views' probabilities (N, 8, 37), in batches of 64."""
    batch = torch.stack(images)
    return np.concatenate([predict_tensor(loaded, batch[s:s + 64], tta=True, keep_views=True)[1]
                           for s in range(0, len(batch), 64)])


def case_views(loaded, originals, zoom: float, shift, rng, stats) -> dict:
    """One case: each galaxy's frame ``r50`` and its 8 views at the frame and at each of
    ``ZOOMS`` times wider."""
    size, crop_fraction = loaded.preprocess.image_size, loaded.preprocess.crop_fraction
    r50, crops = [], {z: [] for z in (1.0,) + ZOOMS}
    for image in originals:
        upload = open_image(reframe(image, zoom, shift, rng)).convert("RGB")
        frame = choose_frame(upload, stats)
        r50.append(frame.source.r50 if frame.source is not None else np.nan)
        for z in crops:
            square = crop(upload, frame.cx, frame.cy, frame.side * crop_fraction * z, size)
            crops[z].append(torch.from_numpy(np.asarray(square, np.uint8).copy()).permute(2, 0, 1))
    return {"r50": np.array(r50), "views": {z: _views(loaded, c) for z, c in crops.items()}}


def widened(case: dict, threshold: float | None) -> np.ndarray:
    """Which galaxies a rule widens (``threshold`` None: the default, none)."""
    if threshold is None:
        return np.zeros(len(case["r50"]), bool)
    return np.nan_to_num(case["r50"], nan=0.0) > threshold


def mixed(case: dict, threshold: float | None, zoom: float, mode: str) -> np.ndarray:
    """The predictions under a rule (``threshold`` None: the default)."""
    plain = case["views"][1.0]
    out = plain.mean(1)
    chosen = widened(case, threshold)
    if not chosen.any():
        return out
    wide = case["views"][zoom]
    if mode == "4+4":
        rule = np.concatenate([plain[:, KEPT_VIEWS], wide[:, list(augment.WIDE_VIEWS)]], 1).mean(1)
    elif mode == "8+8":
        rule = (plain.mean(1) + wide.mean(1)) / 2
    else:
        rule = wide.mean(1)
    out[chosen] = rule[chosen]
    return out


def rule_table(cases: list[dict], targets: np.ndarray, thresholds: dict, rows) -> list[dict]:
    """For each rule and case: RMSE over the known answers of ``rows`` and how many widened."""
    table = []
    for percentile, zoom, mode in [(None, None, None)] + [
            (p, z, m) for p in PERCENTILES for z in ZOOMS for m in MODES]:
        entry = {"rule": "default" if percentile is None else f"p{percentile} x{zoom:g} {mode}",
                 "rmse": [], "widened": []}
        threshold = None if percentile is None else thresholds[percentile]
        for case in cases:
            preds = mixed(case, threshold, zoom, mode)
            entry["rmse"].append(rmse_report(preds[rows], targets[rows])["rmse"])
            entry["widened"].append(int(widened(case, threshold)[rows].sum()))
        table.append(entry)
    return table


def print_table(title: str, table: list[dict]) -> None:
    base = table[0]["rmse"][0]
    print(f"\n{title}\n| rule | " + " | ".join(name for name, _, _ in CASES) + " |")
    print("|---" * (len(CASES) + 1) + "|")
    for entry in table:
        cells = [f"{entry['rmse'][0]:.4f} ({entry['widened'][0]})"] + [
            f"{value / base:.2f}x ({widened})"
            for value, widened in zip(entry["rmse"][1:], entry["widened"][1:])]
        print(f"| {entry['rule']} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    parser = held_out_parser("python -m bench.wide_views", __doc__, seed=2, limit=400)
    parser.add_argument("--training-galaxies", type=int, default=1000,
                        help="training galaxies whose r50 sets the percentiles")
    parser.add_argument("--json", help="also write the tables as JSON")
    args = parser.parse_args(argv)
    loaded = load_checkpoint(checkpoint_or_default(args.checkpoint))
    training, validation = split_train_val(read_labels(args.labels), args.val_fraction, args.seed)
    sources = [find_source(open_image(image_path(args.images, g)).convert("RGB"))
               for g in training.galaxy_ids[:args.training_galaxies]]
    r50 = [s.r50 for s in sources if s is not None]
    if not r50:
        raise ValueError("no source found in any training galaxy; nothing to set the "
                         "percentiles by")
    thresholds = {p: float(np.percentile(r50, p)) for p in PERCENTILES}
    validation = validation.subset(np.arange(min(args.limit, len(validation))))
    originals = [open_image(image_path(args.images, g)).convert("RGB")
                 for g in validation.galaxy_ids]
    rng, stats = np.random.default_rng(0), shipped_stats()
    cases = []
    for name, zoom, shift in CASES:
        cases.append(case_views(loaded, originals, zoom, shift, rng, stats))
        print(f"{name}: r50 median {np.nanmedian(cases[-1]['r50']):.4f}", flush=True)
    print(f"training r50 percentiles ({len(r50)} galaxies): " +
          ", ".join(f"{p}%: {t:.4f}" for p, t in thresholds.items()))
    count = len(originals)
    halves = {"first half (choose on)": np.arange(count // 2),
              "second half (check on)": np.arange(count // 2, count), "all": np.arange(count)}
    tables = {}
    for title, rows in halves.items():
        tables[title] = rule_table(cases, validation.targets, thresholds, rows)
        print_table(f"{title}: {len(rows)} galaxies, split seed {args.seed}; RMSE of the "
                    f"unchanged images (widened), other cases as ratios to the default's",
                    tables[title])
    if args.json:
        write_json(args.json, {"tables": tables, "thresholds": thresholds,
                               "cases": [name for name, _, _ in CASES],
                               "checkpoint": loaded.path, "galaxies": count,
                               "options": vars(args)})
    return 0


if __name__ == "__main__":
    run_cli(main)
