"""A class activation map (Grad-CAM or one of its relatives, galaxy_core.explain) of one galaxy
for one answer, saved as an overlay PNG; or, with --evaluate, how faithful every method and
layer is over a folder of galaxies (galaxy_core.faithfulness: deletion and insertion areas,
beside a random and a centred map).

    python -m train.gradcam [--checkpoint CKPT] --image FILE_OR_GALAXYID [--images DIR]
                            [--answer Class4.1] [--method layercam] [--layer layer3] [--tta]
                            [--no-frame] --out PNG
    python -m train.gradcam --evaluate --images DIR [--labels CSV --split-seed 0] [--limit N]
                            [--methods ...] [--layers ...] [--no-tta] --json OUT
                            [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter

import numpy as np
from PIL import Image

from galaxy_core.augment import TTA_VIEWS
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core import faithfulness
from galaxy_core.data import IMAGE_EXTENSIONS, image_path, list_images, read_labels, split_train_val
from galaxy_core.device import select_device
from galaxy_core.explain import (DEFAULT_LAYER, DEFAULT_METHOD, LAYERS, METHODS, ExplainedImage,
                                 compute_cam, heatmap_image, overlay)
from galaxy_core.files import replacing, write_json, write_text
from galaxy_core.framing import FRAMING_BY_DEFAULT, shipped_stats
from galaxy_core.images import ImageError, display_crop, prepare_for_model, prepare_framed
from galaxy_core.schema import ANSWER_COLUMNS, answer_name
from train.common import check_output_file, checkpoint_or_default, run_cli, setup_logging

log = logging.getLogger("gradcam")

# PIL writes the picture in the format its extension names; PNG first, as it is lossless
OUT_EXTENSIONS = (".png",) + tuple(e for e in IMAGE_EXTENSIONS if e != ".png")


def resolve_image(image: str, images_dir: str | None) -> str:
    if os.path.isfile(image):
        return image
    if images_dir and image.isdigit():
        return image_path(images_dir, image)
    hint = "" if images_dir else " (a GalaxyID needs --images DIR)"
    raise FileNotFoundError(f"no such image: {image}{hint}")


def evaluation_files(args) -> tuple[list[str], str]:
    """The images to score, in a fixed order, and a phrase saying which they are."""
    if args.labels:
        table = read_labels(args.labels)
        _, val = split_train_val(table, args.val_fraction, seed=args.split_seed)
        files = [image_path(args.images, g) for g in val.galaxy_ids]
        where = (f"the validation galaxies of split seed {args.split_seed} "
                 f"({args.val_fraction:g} of {os.path.basename(args.labels)})")
    else:
        files = list_images(args.images)
        where = f"the images of {os.path.basename(os.path.normpath(args.images))}, sorted"
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        files = files[:args.limit]
        where = f"the first {len(files)} of " + where
    if not files:
        raise ValueError(f"no images to evaluate in {args.images}")
    return files, where


def evaluate(args, loaded) -> int:
    """Deletion and insertion areas of every method x layer over a folder, with baselines."""
    check_output_file(args.json, "--json", (".json",))
    if args.markdown:
        check_output_file(args.markdown, "--markdown", (".md",))
    files, where = evaluation_files(args)
    tta = True if args.tta is None else args.tta
    per_image, used, skipped, answers = [], [], [], Counter()
    started = time.perf_counter()

    def write_report(complete: bool) -> dict:
        rows = faithfulness.summarise(per_image)
        best = faithfulness.favoured(rows)
        report = {
            "model": os.path.basename(loaded.path) or "model", "images": len(per_image),
            "complete": complete,
            "galaxies_from": where if complete else f"{where}; stopped after {len(used)}",
            "galaxy_ids": used,
            "skipped": skipped,
            "answer": (answer_name(args.answer) if args.answer else
                       "per galaxy, the answer the verdict takes at its first question"),
            "answers": dict(answers), "views": TTA_VIEWS if tta else 1, "steps": args.steps,
            "normalisation": "areas of the probability divided by the unperturbed one "
                             "(*_raw: of the probability itself)",
            "rows": rows, "favoured": {"method": best["method"], "layer": best["layer"],
                         "beats_baselines": best["beats_baselines"]},
            # per map, per galaxy (in galaxy_ids' order): relative deletion and insertion areas
            "per_galaxy": {name: [[round(c[name].auc("deletion"), 4),
                                   round(c[name].auc("insertion"), 4)] for c in per_image]
                           for name in per_image[0]},
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_json(args.json, report)
        if args.markdown:
            write_text(args.markdown, faithfulness.report_markdown(report))
        return report

    for number, path in enumerate(files, 1):
        try:
            image = prepare_for_model(path, loaded.preprocess)
        except (ImageError, FileNotFoundError) as exc:
            log.warning("skipped %s: %s", path, exc)
            skipped.append(os.path.basename(path))
            continue
        explained = ExplainedImage(loaded, image, tta, layers=tuple(
            layer for layer in LAYERS if layer in args.layers))
        answer = args.answer or explained.default_answer()
        answers[answer] += 1
        per_image.append(faithfulness.score_image(explained, answer, args.methods,
                                                  explained.layers, args.steps, seed=number))
        used.append(os.path.splitext(os.path.basename(path))[0])
        if number % 10 == 0 and number < len(files) and per_image:
            # a long run leaves a usable partial report behind (marked incomplete)
            write_report(complete=False)
            log.info("scored %d of %d galaxies (%.0f s)", number, len(files),
                     time.perf_counter() - started)
    if not per_image:
        raise ValueError(f"none of the {len(files)} images could be read")
    report = write_report(complete=True)
    best = report["favoured"]
    log.info("scored %d galaxies in %.0f s; favoured: %s on %s; wrote %s", len(per_image),
             report["seconds"], best["method"], best["layer"], args.json)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.gradcam", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--image", help="image file, or a GalaxyID with --images")
    parser.add_argument("--images", help="folder of <GalaxyID>.jpg")
    parser.add_argument("--answer", choices=ANSWER_COLUMNS, metavar="ClassQ.A",
                        help="answer column to explain (default: the answer the verdict takes "
                             "at its first question, Q1)")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD)
    parser.add_argument("--layer", choices=LAYERS, default=DEFAULT_LAYER)
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help=f"average the map (and the probability) over the {TTA_VIEWS} flips "
                             f"and right-angle rotations, each map turned back first (default: "
                             f"off for one image, on with --evaluate, as on the Grad-CAM page)")
    parser.add_argument("--frame", action=argparse.BooleanOptionalAction,
                        default=FRAMING_BY_DEFAULT,
                        help="for one --image: zoom in on a galaxy far smaller in its frame than "
                             "almost every training galaxy first, as train.predict and the app "
                             "do (default: on; --evaluate scores Kaggle cut-outs as they are)")
    parser.add_argument("--opacity", type=float, default=0.45)
    parser.add_argument("--side-by-side", action="store_true",
                        help="save original | heatmap | overlay instead of the overlay alone")
    parser.add_argument("--out", help="PNG file to write")
    parser.add_argument("--device", default="auto")
    scoring = parser.add_argument_group("faithfulness (--evaluate)")
    scoring.add_argument("--evaluate", action="store_true",
                         help="score every method x layer over --images by deletion and "
                              "insertion, beside a random and a centred map")
    scoring.add_argument("--labels", help="labels CSV: score the validation galaxies of a split")
    scoring.add_argument("--split-seed", type=int, default=0)
    scoring.add_argument("--val-fraction", type=float, default=0.2)
    scoring.add_argument("--limit", type=int, help="score at most this many galaxies")
    scoring.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    scoring.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    scoring.add_argument("--steps", type=int, default=faithfulness.STEPS,
                         help="pixel shares per curve (1/steps apart)")
    scoring.add_argument("--json", help="report to write (JSON)")
    scoring.add_argument("--markdown", help="the same as a markdown table (for the model card)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.evaluate:
        if not args.images:
            parser.error("--evaluate needs --images DIR")
        if args.json is None:
            parser.error("--evaluate needs --json OUT")
        if not os.path.isdir(args.images):
            raise FileNotFoundError(f"--images {args.images} is not a folder")
        loaded = load_checkpoint(checkpoint_or_default(args.checkpoint),
                                 select_device(args.device))
        return evaluate(args, loaded)
    if args.image is None or args.out is None:  # given but empty: check_output_file says why
        parser.error("--image and --out are needed (or --evaluate with --images and --json)")
    check_output_file(args.out, "--out", OUT_EXTENSIONS)
    source = resolve_image(args.image, args.images)
    loaded = load_checkpoint(checkpoint_or_default(args.checkpoint), select_device(args.device))
    preprocess = loaded.preprocess
    image, frame = prepare_framed(source, preprocess.image_size, preprocess.crop_fraction,
                                  framing=shipped_stats() if args.frame else None)
    if frame is not None and frame.moved:
        log.info("framing: %s", frame.why)
    result = compute_cam(loaded, image, args.answer, args.method, args.layer, bool(args.tta))
    shown = display_crop(source, preprocess, frame=frame)  # the region the model saw
    picture = overlay(shown, result.heatmap, args.opacity)
    if args.side_by_side:
        picture = np.concatenate([shown, heatmap_image(result.heatmap, shown.shape[0]), picture],
                                 axis=1)
    with replacing(args.out, os.path.splitext(args.out)[1]) as tmp:  # PIL goes by the extension
        Image.fromarray(picture).save(tmp)
    trained = "" if result.answer_column in loaded.trained_columns else " (NOT learned)"
    log.info("%s for %s%s: predicted %.3f; wrote %s", result.method, answer_name(
        result.answer_column), trained, result.probability, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
