"""Framing report: how a checkpoint scores when galaxies are framed unlike the training images,
with automatic framing off and on, and what framing costs.

    python -m bench.framing --images DIR --labels CSV [--checkpoint CKPT] [--limit 500]
        [--no-tta] [--json OUT] [--cost-only]

On the validation galaxies of the split ``train.train`` draws (``--val-fraction``, ``--seed``),
each image is re-framed five ways and saved as JPEG quality 95, as an upload would be:
- zoom z > 1 (a tighter cut-out) takes the centre 424/z px and resizes it back (bicubic);
- zoom z < 1 (a wider one) shrinks the whole image by z into a frame of sky-like noise (the
  per-channel median and spread of its 8-pixel border);
- the shift moves the content by (48, -32) px and fills the uncovered edge the same way.
Each case is predicted with automatic framing off and on; the table gives the RMSE over the
known answers and its ratio to the unchanged images without framing, and, for a checkpoint with
intervals, how often they hold the volunteers' fraction in each case.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.data import image_path, read_labels, split_train_val
from galaxy_core.files import write_json
from galaxy_core.framing import choose_frame, crop, shipped_stats
from galaxy_core.images import centre_resize, open_image
from galaxy_core.metrics import score
from galaxy_core.predict import predict_files, predict_image
from galaxy_core.schema import ANSWER_COLUMNS
from galaxy_core.uncertainty import coverage, learned_targets
from train.common import checkpoint_or_default, run_cli

CASES = [("as in Kaggle", 1.0, (0, 0)), ("galaxy 2x smaller in the frame", 0.5, (0, 0)),
         ("0.7x", 0.7, (0, 0)), ("1.4x larger", 1.4, (0, 0)), ("2x larger", 2.0, (0, 0)),
         ("off centre by (48, -32) px", 1.0, (48, -32))]
BORDER = 8


def sky_noise(array: np.ndarray, shape, rng) -> np.ndarray:
    border = np.concatenate([array[:BORDER].reshape(-1, 3), array[-BORDER:].reshape(-1, 3),
                             array[:, :BORDER].reshape(-1, 3), array[:, -BORDER:].reshape(-1, 3)])
    median = np.median(border, axis=0)
    spread = 1.4826 * np.median(np.abs(border - median), axis=0)
    return rng.normal(median, np.maximum(spread, 0.5), shape)


def reframe(image: Image.Image, zoom: float, shift, rng) -> bytes:
    """One test case of ``image`` (the module docstring), as JPEG quality 95 bytes."""
    side = image.width
    array = np.asarray(image, dtype=np.float32)
    if zoom > 1:
        keep = side / zoom
        box = ((side - keep) / 2, (side - keep) / 2, (side + keep) / 2, (side + keep) / 2)
        out = image.resize((side, side), Image.Resampling.BICUBIC, box=box)
    elif zoom < 1 or shift != (0, 0):
        canvas = sky_noise(array, (side, side, 3), rng)
        small = image.resize((round(side * zoom),) * 2, Image.Resampling.BICUBIC) \
            if zoom < 1 else image
        part = np.asarray(small, dtype=np.float32)
        x0 = (side - part.shape[1]) // 2 + shift[0]
        y0 = (side - part.shape[0]) // 2 + shift[1]
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = min(side, x0 + part.shape[1]), min(side, y0 + part.shape[0])
        canvas[ys:ye, xs:xe] = part[ys - y0:ye - y0, xs - x0:xe - x0]
        out = Image.fromarray(canvas.clip(0, 255).round().astype(np.uint8))
    else:
        out = image
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _best_ms(work, count: int, repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``work()``, in ms per item (the least disturbed by
    whatever else the machine does)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return 1000 * best / count


def framing_cost(loaded, stats, sources: list[bytes], repeats: int = 7) -> dict[str, float]:
    """Milliseconds per image: the framing step on the decoded images (finding the galaxy and
    choosing the frame, plus cutting the new frame where it moved and the wider square where
    half of the 8 views see one, counted although a one-view prediction skips it), the same net
    of the plain centre resize that a moved frame's cut replaces (``framing_net_ms``: what
    framing adds to a prediction), a one-view prediction of the images in batches
    (``predict_files``, decoding included, one decoding thread, as the CLI runs), and a one-view
    prediction of one upload alone (``predict_image``, as the app runs). Each the fastest of
    ``repeats`` runs; the shares are of the net cost."""
    size, crop_fraction = loaded.preprocess.image_size, loaded.preprocess.crop_fraction
    names = [f"{i}.jpg" for i in range(len(sources))]
    decoded = [open_image(data).convert("RGB") for data in sources]

    def frame_all():
        for image in decoded:
            chosen = choose_frame(image, stats)
            if chosen.moved:
                crop(image, chosen.cx, chosen.cy, chosen.side * crop_fraction, size)
            if chosen.wider > 1:
                crop(image, chosen.cx, chosen.cy, chosen.side * crop_fraction * chosen.wider, size)

    frames = [choose_frame(image, stats) for image in decoded]

    def replaced_all():  # the resize each moved frame's cut replaces
        for image, chosen in zip(decoded, frames):
            if chosen.moved:
                centre_resize(image, size, crop_fraction)

    framing = _best_ms(frame_all, len(decoded), repeats)
    net = framing - _best_ms(replaced_all, len(decoded), repeats)
    batch = _best_ms(lambda: predict_files(loaded, sources, names=names, batch_size=64,
                                           tta=False, workers=1), len(sources), repeats)
    alone = _best_ms(lambda: [predict_image(loaded, data) for data in sources[:16]],
                     min(16, len(sources)), repeats)
    return {"framing_ms": framing, "framing_net_ms": net, "batch_predict_ms": batch,
            "one_upload_ms": alone, "of_batch": net / batch, "of_one_upload": net / alone,
            "moved": sum(frame.moved for frame in frames),
            "widened": sum(frame.wider > 1 for frame in frames), "images": len(decoded)}


def cost_line(case: str, cost: dict[str, float]) -> str:
    return (f"{case} ({cost['moved']} of {cost['images']} re-framed, "
            f"{cost['widened']} with wider views): framing step "
            f"{cost['framing_ms']:.2f} ms per image, {cost['framing_net_ms']:.2f} ms net of the "
            f"resizes it replaces; a one-view prediction "
            f"{cost['batch_predict_ms']:.1f} ms per image in batches of 64 "
            f"({cost['of_batch']:.1%}) and {cost['one_upload_ms']:.1f} ms for one upload alone "
            f"({cost['of_one_upload']:.1%}); decoding included in both")


def held_out_parser(prog: str, description: str, seed: int, limit: int):
    """The arguments of a report on a checkpoint's held-out galaxies: the checkpoint, the labelled
    images, and which validation split (as ``train.train`` draws it) and how many of it."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--limit", type=int, default=limit, help="validation galaxies used")
    return parser


def main(argv=None) -> int:
    parser = held_out_parser("python -m bench.framing", __doc__, seed=0, limit=500)
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True,
                        help="average the 8 views, as the app and train.predict do (default)")
    parser.add_argument("--json", help="also write the table as JSON")
    parser.add_argument("--cost-only", action="store_true",
                        help="only what the framing step costs (64 galaxies), not the table")
    args = parser.parse_args(argv)
    loaded = load_checkpoint(checkpoint_or_default(args.checkpoint))
    _, validation = split_train_val(read_labels(args.labels), args.val_fraction, args.seed)
    validation = validation.subset(np.arange(min(args.limit, len(validation))))
    stats = shipped_stats()
    rng = np.random.default_rng(0)
    originals = [open_image(image_path(args.images, g)).convert("RGB")
                 for g in validation.galaxy_ids[:64 if args.cost_only else None]]
    rows = []
    for name, zoom, shift in ([] if args.cost_only else CASES):
        sources = [reframe(image, zoom, shift, rng) for image in originals]
        names = [f"{g}.jpg" for g in validation.galaxy_ids]
        row = {"case": name}
        for label, framing in (("off", None), ("on", stats)):
            result = predict_files(loaded, sources, names=names, batch_size=64, tta=args.tta,
                                   workers=1, framing=framing)
            preds = result.frame[list(ANSWER_COLUMNS)].to_numpy()
            targets = validation.targets[result.kept]
            row[label] = score(preds, targets)["rmse"]
            if loaded.calibration is not None:  # do its intervals still hold the volunteers?
                row[f"{label}_coverage"] = coverage(
                    loaded.calibration, preds,
                    learned_targets(targets, loaded.trained_columns))["all"]["coverage"]
        rows.append(row)
        print(f"{name:32s} off {row['off']:.4f}  on {row['on']:.4f}", flush=True)
    if rows:
        print_tables(rows, len(validation), args.seed, args.tta, loaded)
    # what framing costs beside a one-view prediction of the same images
    costs = {name: framing_cost(loaded, stats, [reframe(image, zoom, shift, rng)
                                                for image in originals[:64]])
             for name, zoom, shift in (CASES[0], CASES[1])}
    print()
    for name, cost in costs.items():
        print(cost_line(name, cost), flush=True)
    if args.json:
        write_json(args.json, {"rows": rows, "galaxies": len(validation), "tta": args.tta,
                               "checkpoint": loaded.path, "cost_ms": costs})
    return 0


def print_tables(rows: list[dict], galaxies: int, seed: int, tta: bool, loaded) -> None:
    """The RMSE table, then (for a checkpoint with intervals) the coverage table."""
    base = rows[0]["off"]
    print(f"\n{galaxies} validation galaxies (split seed {seed}), "
          f"{'8 views' if tta else 'one view'}, {loaded.path}")
    print("| framing | framing off | ratio | framing on | ratio |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['off']:.4f} | {row['off'] / base:.2f}x | "
              f"{row['on']:.4f} | {row['on'] / base:.2f}x |")
    if loaded.calibration is not None:
        print(f"\nhow often the checkpoint's {loaded.calibration.level:.0%} intervals hold the "
              f"volunteers' fraction (all learned answers)")
        print("| framing | framing off | framing on |\n|---|---|---|")
        for row in rows:
            print(f"| {row['case']} | {row['off_coverage']:.1%} | {row['on_coverage']:.1%} |")


if __name__ == "__main__":
    run_cli(main)
