"""A class activation map (Grad-CAM or one of its relatives, galaxy_core.explain) of one galaxy
for one answer, saved as an overlay PNG.

    python -m train.gradcam [--checkpoint CKPT] --image FILE_OR_GALAXYID [--images DIR]
                            [--answer Class4.1] [--method layercam] [--layer layer3] [--tta]
                            --out PNG
"""

from __future__ import annotations

import argparse
import logging
import os

import numpy as np
from PIL import Image

from galaxy_core.augment import TTA_VIEWS
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.data import IMAGE_EXTENSIONS, image_path
from galaxy_core.device import select_device
from galaxy_core.explain import LAYERS, METHODS, explain_image, heatmap_image, overlay
from galaxy_core.files import replacing
from galaxy_core.images import display_crop
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.gradcam", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--image", required=True, help="image file, or a GalaxyID with --images")
    parser.add_argument("--images", help="folder of <GalaxyID>.jpg")
    parser.add_argument("--answer", choices=ANSWER_COLUMNS, metavar="ClassQ.A",
                        help="answer column to explain (default: the top predicted answer)")
    parser.add_argument("--method", choices=METHODS, default="gradcam")
    parser.add_argument("--layer", choices=LAYERS, default="layer4")
    parser.add_argument("--tta", action="store_true",
                        help=f"average the map (and the probability) over the {TTA_VIEWS} flips "
                             f"and right-angle rotations, each map turned back first")
    parser.add_argument("--opacity", type=float, default=0.45)
    parser.add_argument("--side-by-side", action="store_true",
                        help="save original | heatmap | overlay instead of the overlay alone")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    setup_logging()
    check_output_file(args.out, "--out", OUT_EXTENSIONS)
    source = resolve_image(args.image, args.images)
    loaded = load_checkpoint(checkpoint_or_default(args.checkpoint), select_device(args.device))
    result = explain_image(loaded, source, args.answer, args.method, args.layer, tta=args.tta)
    shown = display_crop(source, loaded.preprocess)
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
