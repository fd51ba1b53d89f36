"""How well the "unlike the training images" flags separate galaxies from everything else.

    python -m bench.flags --images DIR --labels CSV [--val-fraction 0.2 --seed 0] [--no-frame]

Prints the share of the split's validation galaxies (real Kaggle cut-outs the ranges were not
measured on) that get a flag (goal: at most 2%), and, for images unlike them, which are caught
(goal: at least 90%): the sample photographs scikit-image ships (`pip install scikit-image` to
include them) and generated tiny, blank, noise and gradient images.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from galaxy_core.data import image_path, read_labels, split_train_val
from galaxy_core.images import decoded_rgb
from galaxy_core.framing import FRAMING_BY_DEFAULT, shipped_stats
from galaxy_core.quality import flags_as_seen, shipped_ranges
from train.common import run_cli

# scikit-image's sample images; the Hubble deep field is astronomical but no single galaxy
PHOTOS = ["astronaut", "brick", "camera", "cat", "chelsea", "clock", "coffee", "coins",
          "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
          "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text",
          "checkerboard", "microaneurysms"]


def generated() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 424, dtype=np.float32)
    return {
        "tiny 32 px galaxy": Image.new("RGB", (32, 32), (4, 4, 2)),
        "black": Image.new("RGB", (424, 424)), "white": Image.new("RGB", (424, 424), "white"),
        "grey": Image.new("RGB", (424, 424), (128, 128, 128)),
        "uniform noise": Image.fromarray(rng.integers(0, 256, (424, 424, 3), dtype=np.uint8)),
        "dark gaussian noise": Image.fromarray(rng.normal(20, 8, (424, 424, 3)).clip(0, 255)
                                               .astype(np.uint8)),
        "horizontal gradient": Image.fromarray(np.repeat(np.tile(ramp, (424, 1))[..., None], 3,
                                                         axis=2).astype(np.uint8)),
        "radial gradient": Image.fromarray(np.repeat((255 - np.hypot(*np.meshgrid(
            ramp - 127, ramp - 127)).clip(0, 255))[..., None], 3, axis=2).astype(np.uint8)),
    }


def photos() -> dict[str, Image.Image]:
    try:
        import skimage.data
    except ImportError:
        print("scikit-image is not installed: the photographs are left out")
        return {}
    found = {}
    for name in PHOTOS:
        try:
            array = getattr(skimage.data, name)()
        except Exception:  # some need a download or an extra package
            continue
        found[f"photo: {name}"] = Image.fromarray(array)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flags", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame", action=argparse.BooleanOptionalAction,
                        default=FRAMING_BY_DEFAULT,
                        help="judge what the model sees after automatic framing, as the app "
                             "and train.predict do by default")
    args = parser.parse_args(argv)
    ranges = shipped_ranges()
    framing = shipped_stats() if args.frame else None
    print(f"automatic framing {'on' if framing else 'off'}")
    _, validation = split_train_val(read_labels(args.labels), args.val_fraction, args.seed)
    flagged = {}
    for galaxy_id in validation.galaxy_ids:
        found = flags_as_seen(decoded_rgb(image_path(args.images, galaxy_id)), ranges, framing)
        if found:
            flagged[int(galaxy_id)] = "; ".join(f.message for f in found)
    share = len(flagged) / len(validation)
    print(f"real galaxies flagged: {len(flagged)} of {len(validation)} ({share:.1%}; goal <= 2%)")
    for galaxy_id, message in list(flagged.items())[:10]:
        print(f"  {galaxy_id}: {message}")
    unlike = {**photos(), **generated()}
    caught = 0
    for name, image in unlike.items():
        found = flags_as_seen(image.convert("RGB"), ranges, framing)
        caught += bool(found)
        print(f"  {'caught' if found else 'MISSED'}  {name}: "
              f"{'; '.join(f.message for f in found) or '-'}")
    print(f"unlike images caught: {caught} of {len(unlike)} ({caught / len(unlike):.0%}; "
          f"goal >= 90%)")
    return 0


if __name__ == "__main__":
    run_cli(main)
