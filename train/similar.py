"""The galaxies of an index most like a query, as CSV on standard output.

    python -m train.similar --index INDEX.npz --image FILE_OR_FOLDER_OR_GALAXYID [--k 10]
                            [--checkpoint CKPT] [--search {auto,exact,approximate}]

Columns ``query,rank,GalaxyID,distance``, nearest first (rank 1); the distance is the cosine
distance of the embeddings (0: the same galaxy, up to 2). A query may be an image file, a
folder (each image in it is a query), or a GalaxyID of the index (no model needed; a galaxy of
the index finds itself first, at distance 0). Image queries are embedded with --checkpoint
(default: the shipped model), which must be the checkpoint the index was built with, and
framed first when the index's galaxies were (``train.embed --frame``, the default).

--search auto (the default) is exact up to galaxy_core.similarity.EXACT_LIMIT galaxies and
approximate (faiss) past it; exact and approximate force one. An approximate search builds its
index in memory first (1-1.5 minutes at a million galaxies here), then proposes neighbours
whose distances are still exact.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys

from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.data import DataError, list_images
from galaxy_core.device import select_device
from galaxy_core.images import ImageError
from galaxy_core.similarity import (SEARCH_METHODS, Embedder, SimilarityError,
                                    check_checkpoint, checkpoint_identity, framing_of,
                                    load_index, search)
from train.common import checkpoint_or_default, run_cli, setup_logging

log = logging.getLogger("similar")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.similar", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, help="index file made by train.embed")
    parser.add_argument("--image", required=True,
                        help="image file, folder of images, or a GalaxyID of the index")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--checkpoint", help="model that embeds image queries; must be the "
                                             "index's (default: the shipped model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--search", choices=SEARCH_METHODS, default="auto",
                        help="exact or approximate nearest neighbours (default auto: exact up "
                             "to a few hundred thousand galaxies)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}")
    index = load_index(args.index)
    if args.checkpoint:  # checked even for GalaxyID queries: the user named a model
        check_checkpoint(index, checkpoint_identity(checkpoint_or_default(args.checkpoint)),
                         f"the index {args.index}")
    if len(index) == 0:
        raise SimilarityError(f"the index {args.index} holds no galaxies yet")

    if os.path.isdir(args.image) or os.path.isfile(args.image):
        paths = list_images(args.image) if os.path.isdir(args.image) else [args.image]
        if not paths:
            raise DataError(f"no images in the folder {args.image}")
        checkpoint = checkpoint_or_default(args.checkpoint)
        identity = checkpoint_identity(checkpoint)
        check_checkpoint(index, identity, f"the index {args.index}")
        embedder = Embedder(load_checkpoint(checkpoint, select_device(args.device)), identity)
        # framed as the index's galaxies were, so an indexed galaxy's own image finds itself
        kept, queries, errors = embedder.embed_files(paths, framing=framing_of(index))
        if not kept:
            raise ImageError(errors[0][1] if len(errors) == 1 else
                             f"none of the {len(paths)} images in {args.image} could be read")
        for _, message in errors:
            print(f"skipped {message}", file=sys.stderr)
        names = [os.path.basename(paths[i]) for i in kept]
    elif index.position(args.image.strip()) is not None:
        names, queries = [args.image.strip()], index.vector_of(args.image.strip())[None]
    else:
        raise SimilarityError(f"--image {args.image} is neither an image file, a folder, nor a "
                              f"GalaxyID of the index ({len(index)} galaxies)")

    positions, distances = search(index, queries, args.k, method=args.search)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["query", "rank", "GalaxyID", "distance"])
    for name, row, dist in zip(names, positions, distances):
        for rank, (position, distance) in enumerate(zip(row, dist), start=1):
            writer.writerow([name, rank, index.galaxy_ids[position], f"{distance:.6f}"])
    return 0


if __name__ == "__main__":
    run_cli(main)
