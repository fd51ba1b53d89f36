"""Build or extend a similarity index: one vector per galaxy image (galaxy_core.similarity).

    python -m train.embed [--checkpoint CKPT] --images DIR --out INDEX.npz
    python -m train.embed [--checkpoint CKPT] --dataset NAME     (an index the app uses)

Each image of DIR becomes the model's 512 pooled features averaged over the 8 flips/right-angle
rotations, unit length, stored as float16 with its GalaxyID (the file name without extension),
the checkpoint's SHA-256 and its preprocessing. Run again on the same folder, only galaxies not
yet in the index are embedded; an index of another checkpoint is refused, never mixed. The file
is saved every 10,000 galaxies and at the end, each time by renaming a complete file over it.

``--dataset NAME`` builds the index of a dataset the app offers (GALAXY_DATASETS or the shipped
samples) where the Similar galaxies page looks for it: GALAXY_INDEX_DIR, else runs/indexes/.
"""

from __future__ import annotations

import argparse
import logging
import sys

from galaxy_core import datasets
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.device import select_device
from galaxy_core.framing import FRAMING_BY_DEFAULT
from galaxy_core.similarity import Embedder, dataset_index_path, update_index
from train.common import LazyBar, check_output_file, checkpoint_or_default, run_cli, setup_logging

log = logging.getLogger("embed")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint (default: the shipped model)")
    parser.add_argument("--images", help="folder of galaxy images (<GalaxyID>.jpg, ...)")
    parser.add_argument("--out", help="index file to create or extend (.npz)")
    parser.add_argument("--dataset", help="instead of --images/--out: a configured dataset's "
                                          "name, indexed where the app looks for it")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="decoding threads (default 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--frame", action=argparse.BooleanOptionalAction,
                        default=FRAMING_BY_DEFAULT,
                        help="a new index frames each galaxy first, as train.predict does "
                             f"(default {'on' if FRAMING_BY_DEFAULT else 'off'}); its queries "
                             "are then framed too. An existing index keeps its own choice "
                             "unless --rebuild")
    parser.add_argument("--rebuild", action="store_true",
                        help="embed every galaxy again, with this --frame choice (the old "
                             "index serves until the new one's first save)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.dataset is not None and (args.images or args.out):
        raise ValueError("give either --dataset or --images with --out, not both")
    if args.dataset is None and not (args.images and args.out):
        raise ValueError("give --images DIR and --out INDEX.npz (or --dataset NAME)")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out:
        check_output_file(args.out, "--out", (".npz",))
    dataset = datasets.by_name(datasets.configured(), args.dataset) if args.dataset else None
    loaded = load_checkpoint(checkpoint_or_default(args.checkpoint), select_device(args.device))
    embedder = Embedder(loaded)
    if dataset is not None:
        images, out = dataset.images, dataset_index_path(dataset.name, embedder.identity)
    else:
        images, out = args.images, args.out
    with LazyBar("embedding") as progress:
        index, added, errors = update_index(embedder, images, out, args.batch_size,
                                            args.workers, progress, framed=args.frame,
                                            rebuild=args.rebuild)
    if bool(index.meta.get("framed")) != args.frame:
        log.warning("%s was built with framing %s, which it keeps (--rebuild changes it)", out,
                    "on" if index.meta.get("framed") else "off")
    if errors:
        print(f"skipped {len(errors)} unreadable file(s):", file=sys.stderr)
        for _, message in errors:
            print(f"  {message}", file=sys.stderr)
    log.info("added %d galaxies; %s now holds %d", added, out, len(index))
    return 0


if __name__ == "__main__":
    run_cli(main)
