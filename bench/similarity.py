"""How well and how fast similarity search works, on labelled galaxies the recipe held out.

    python -m bench.similarity --data ../shared/data/galaxyzoo_sample [--checkpoint CKPT]
                               [--json OUT]

The galaxies are split-0's 800 validation galaxies (``split_train_val(labels, 0.2, seed=0)``),
indexed with --checkpoint (default: the shipped model, which was trained on all 4000, these
800 included: say so beside the numbers). Prints:

(a) how often a query turned 90 degrees and mirrored finds its original first, among the 800:
    the turned image saved losslessly (PNG), and re-saved as JPEG (quality 90); and, harder,
    turned 45 degrees (resampled: not one of the 8 views the embedding averages) and mirrored;
(b) the mean RMSE between a query's volunteer fractions and those of its 5 nearest neighbours
    (itself left out), per question, over the answer cells known for both galaxies, divided by
    the same for 5 random other galaxies per query (seeded); the mean over all pairs is printed
    beside the random draw as a check;
(c) seconds to embed 1000 galaxies (decoding included; batch 32, one decoding thread), and the
    latency of one query's search in an index of 4,000 and of 100,000 galaxies (random unit
    float16 vectors: search time does not depend on what the vectors hold), median of repeats,
    plus one image query end to end (decode, 8 views, search).

With ``--scale N [N ...]`` (no --data needed) it prints instead, per N, what approximate search
(faiss, used past ``EXACT_LIMIT`` galaxies) costs and finds, on two synthetic sets of N unit
float16 vectors: random ones (no neighbourhoods: the worst case for an approximate index) and
clustered ones (one centre per 1,000 galaxies plus noise as long as the centre, so a galaxy's
neighbours share its centre): the exact and the approximate latency of one query (k = 10, median),
the approximate index's build time, and its recall@10 against exact search over 100 new queries
drawn like the set, with more lists probed (x2, x4) for comparison; and how often a galaxy of the
index finds itself first.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from galaxy_core import paths
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.data import image_path, read_labels, split_train_val
from galaxy_core.files import write_json
from galaxy_core.schema import COLUMN_INDEX, QUESTIONS
from galaxy_core.similarity import (DIM, EXACT_LIMIT, Embedder, SimilarityIndex,
                                    approximate_index, ivf_shape, load_index, new_index,
                                    save_index, search, unit_rows, with_added)

NEIGHBOURS = 5


# how each query is made from its original: turned 90 degrees and mirrored, saved losslessly or
# re-compressed; or turned 45 degrees (resampled, so no longer one of the 8 views averaged)
VARIANTS = {"png": ("turned 90 deg + mirrored, saved as PNG", 90, "PNG"),
            "jpeg": ("turned 90 deg + mirrored, saved as JPEG q90", 90, "JPEG"),
            "rot45": ("turned 45 deg (bilinear) + mirrored, saved as PNG", 45, "PNG")}


def turned_and_mirrored(path: str, variant: str) -> bytes:
    _, angle, fmt = VARIANTS[variant]
    image = Image.open(path).convert("RGB")
    if angle == 90:
        image = image.transpose(Image.Transpose.ROTATE_90)
    else:  # the model's 50% centre crop lies inside the turned frame: no black corners in it
        image = image.rotate(angle, Image.Resampling.BILINEAR)
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def pair_rmse(targets: np.ndarray, columns, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMSE over ``columns`` known in both galaxies, per pair (a[i], b[i]); NaN when none."""
    x, y = targets[a][:, columns], targets[b][:, columns]
    known = ~np.isnan(x) & ~np.isnan(y)
    squared = np.where(known, (x - y) ** 2, 0.0).sum(1)
    count = known.sum(1)
    return np.where(count > 0, np.sqrt(squared / np.maximum(count, 1)), np.nan)


def neighbour_quality(index, targets: np.ndarray, learned: list[str]) -> dict:
    """Per question (and over every learned answer): mean pair RMSE to the nearest neighbours
    and to random galaxies. ``targets`` (N, len(learned)) in the index's order."""
    n = len(index)
    positions, _ = search(index, index.vectors, NEIGHBOURS + 1)
    near_a, near_b = [], []
    for i in range(n):
        mine = [p for p in positions[i] if p != i][:NEIGHBOURS]
        near_a += [i] * len(mine)
        near_b += mine
    rng = np.random.default_rng(0)
    rand_a = np.repeat(np.arange(n), NEIGHBOURS)
    others = np.concatenate([rng.choice(n - 1, NEIGHBOURS, replace=False) for _ in range(n)])
    rand_b = others + (others >= rand_a)  # any galaxy but the query itself
    every_a, every_b = np.triu_indices(n, 1)
    groups = [(f"Q{q.number}", [learned.index(a.column) for a in q.answers
                                if a.column in learned]) for q in QUESTIONS]
    results = {}
    for name, columns in groups + [("all", list(range(len(learned))))]:
        if not columns:
            continue
        near = np.nanmean(pair_rmse(targets, columns, np.array(near_a), np.array(near_b)))
        rand = np.nanmean(pair_rmse(targets, columns, rand_a, rand_b))
        every = np.nanmean(pair_rmse(targets, columns, every_a, every_b))
        results[name] = {"neighbours": float(near), "random": float(rand),
                         "all_pairs": float(every), "ratio": float(near / rand)}
    return results


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_index(n: int, seed: int, folder: str):
    """A saved and reloaded index of ``n`` random unit float16 vectors."""
    vectors = unit_rows(np.random.default_rng(seed).standard_normal((n, DIM), np.float32))
    index = with_added(new_index({"sha256": "synthetic", "label": "synthetic"},
                                 load_checkpoint(paths.DEFAULT_MODEL).preprocess),
                       [str(i) for i in range(n)], vectors)
    path = os.path.join(folder, f"synthetic-{n}.npz")
    save_index(index, path)
    start = time.perf_counter()
    loaded = load_index(path)
    return loaded, time.perf_counter() - start, os.path.getsize(path)


def synthetic_vectors(n: int, kind: str, seed: int) -> np.ndarray:
    """``n`` unit vectors rounded to float16 as an index file stores them (float32, unit rows),
    made in blocks to bound memory; "clustered" ones share centres whatever the seed."""
    centres = unit_rows(np.random.default_rng(0).standard_normal((max(1, n // 1000), DIM),
                                                                  np.float32))
    rng = np.random.default_rng(seed)
    rows = []
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        block = rng.standard_normal((size, DIM), np.float32)
        if kind == "clustered":
            block = centres[rng.integers(len(centres), size=size)] + block / np.sqrt(DIM)
        rows.append(unit_rows(unit_rows(block).astype(np.float16)))
    return np.concatenate(rows)


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


def approximate_at_scale(n: int, kind: str) -> dict:
    """(d) exact vs approximate search of one synthetic set of ``n`` galaxies."""
    import faiss  # optional for the project, needed here
    index = SimilarityIndex(np.arange(n).astype(str), synthetic_vectors(n, kind, seed=1),
                            {"checkpoint": {}})
    queries = synthetic_vectors(100, kind, seed=2)
    row = {"exact_ms": median_seconds(lambda: search(index, queries[:1], 10, method="exact"),
                                      5) * 1000}
    exact, _ = search(index, queries, 10, method="exact")
    start = time.perf_counter()
    ivf = approximate_index(index)
    row["build_s"] = time.perf_counter() - start
    row["lists"], row["probed"] = ivf_shape(n)
    row["approximate_ms"] = median_seconds(
        lambda: search(index, queries[:1], 10, method="approximate"), 50) * 1000
    found, _ = search(index, queries, 10, method="approximate")
    row["recall_at_10"] = recall_at(found, exact)
    members = np.random.default_rng(3).choice(n, 100, replace=False)
    found, _ = search(index, index.vectors[members], 10, method="approximate")
    row["itself_first"] = float((found[:, 0] == members).mean())
    row["more_probed"] = {}
    for times in (2, 4):  # the trade-off: recall and latency with more lists probed
        params = faiss.SearchParametersIVF(nprobe=min(row["lists"], row["probed"] * times))
        _, found = ivf.search(queries, 10, params=params)
        seconds = median_seconds(lambda: ivf.search(queries[:1], 10, params=params), 20)
        row["more_probed"][str(times)] = {"recall_at_10": recall_at(found, exact),
                                          "ms": seconds * 1000}
    return row


def scale_report(sizes) -> dict:
    report = {"exact_limit": EXACT_LIMIT, "cpu_count": os.cpu_count(),
              "load_average_before": os.getloadavg()[0], "sets": {}}
    print(f"(d) approximate search (faiss IVF) vs exact, one query, k=10; load average "
          f"{report['load_average_before']:.1f} on {os.cpu_count()} cores")
    for n in sizes:
        for kind in ("random", "clustered"):
            row = approximate_at_scale(n, kind)
            report["sets"][f"{kind}-{n}"] = row
            more = ", ".join(f"x{t}: {m['recall_at_10']:.3f} in {m['ms']:.1f} ms"
                             for t, m in row["more_probed"].items())
            print(f"(d) {n} {kind}: exact {row['exact_ms']:.1f} ms; approximate "
                  f"{row['approximate_ms']:.2f} ms after a {row['build_s']:.1f} s build "
                  f"({row['probed']} of {row['lists']} lists probed), recall@10 "
                  f"{row['recall_at_10']:.3f}, itself first {row['itself_first']:.0%}; "
                  f"more lists probed {more}", flush=True)
    report["load_average_end"] = os.getloadavg()[0]
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.similarity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data",
                        help="folder with images/ and labels_partial.csv (the real sample)")
    parser.add_argument("--checkpoint", default=paths.DEFAULT_MODEL)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="how (a)'s queries are made (default: all)")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--scale", type=int, nargs="+", metavar="N",
                        help="only (d): approximate vs exact search of N synthetic galaxies")
    args = parser.parse_args(argv)
    if args.scale:
        if min(args.scale) < 1000:
            parser.error(f"--scale sizes must be >= 1000 galaxies, got {min(args.scale)}")
        report = scale_report(args.scale)
        if args.json:
            write_json(args.json, report)
        return 0
    if not args.data:
        parser.error("--data is required (unless --scale is given)")
    labels = os.path.join(args.data, "labels_partial.csv")
    images = os.path.join(args.data, "images")
    _, held_out = split_train_val(read_labels(labels), 0.2, seed=0)
    sources = [image_path(images, g) for g in held_out.galaxy_ids]
    loaded = load_checkpoint(args.checkpoint)
    embedder = Embedder(loaded)
    report = {"checkpoint": embedder.identity, "galaxies": len(sources),
              "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    print(f"{len(sources)} held-out galaxies (split 0), checkpoint {embedder.identity['label']}; "
          f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    start = time.perf_counter()
    kept, vectors, errors = embedder.embed_files(sources, batch_size=32, workers=1)
    build_s = time.perf_counter() - start
    assert not errors, errors
    report["build_s_per_1000"] = build_s / len(sources) * 1000
    report["load_average_after_build"] = os.getloadavg()[0]
    print(f"(c) embedding: {build_s:.1f} s for {len(sources)} galaxies = "
          f"{report['build_s_per_1000']:.0f} s per 1000 (load average now "
          f"{report['load_average_after_build']:.1f})")

    with tempfile.TemporaryDirectory() as folder:
        index = with_added(new_index(embedder.identity, loaded.preprocess),
                           [str(g) for g in held_out.galaxy_ids], vectors)
        save_index(index, os.path.join(folder, "heldout.npz"))
        index = load_index(os.path.join(folder, "heldout.npz"))  # as stored: float16

        report["turned_found_first"] = {}
        for variant in args.variants:
            queries = [turned_and_mirrored(s, variant) for s in sources]
            _, turned, errors = embedder.embed_files(queries, names=["query"] * len(queries))
            assert not errors, errors
            positions, _ = search(index, turned, 1)
            share = float((positions[:, 0] == np.arange(len(sources))).mean())
            report["turned_found_first"][variant] = share
            print(f"(a) {VARIANTS[variant][0]}: original found first for {share:.1%} of "
                  f"{len(sources)}")

        learned = [c for c in loaded.trained_columns if c in held_out.columns]
        targets = held_out.targets[:, [COLUMN_INDEX[c] for c in learned]]
        quality = neighbour_quality(index, targets, learned)
        report["neighbour_rmse"] = quality
        print(f"(b) mean RMSE of the volunteer fractions, query vs its {NEIGHBOURS} nearest and "
              f"vs {NEIGHBOURS} random galaxies (all pairs):")
        for name, row in quality.items():
            print(f"    {name:>4}: nearest {row['neighbours']:.4f}  random {row['random']:.4f} "
                  f"({row['all_pairs']:.4f})  ratio {row['ratio']:.2f}")

        report["search_ms"] = {}
        for n in (4000, 100_000):
            big, load_s, size = synthetic_index(n, n, folder)
            query = big.vectors[123:124]
            seconds = median_seconds(lambda: search(big, query, 10), 50 if n > 10_000 else 200)
            report["search_ms"][str(n)] = {"median_ms": seconds * 1000, "load_s": load_s,
                                           "file_mb": size / 1e6}
            print(f"(c) search, one query, k=10, {n} galaxies: {seconds * 1000:.2f} ms "
                  f"(index file {size / 1e6:.1f} MB, loaded in {load_s:.2f} s)")
        with open(sources[0], "rb") as handle:
            data = handle.read()
        seconds = median_seconds(lambda: search(index, embedder.embed_one(data, "q.jpg")[0], 10), 10)
        report["image_query_ms"] = seconds * 1000
        print(f"(c) one image query end to end (decode, 8 views, search {len(index)}): "
              f"{seconds * 1000:.0f} ms")
    report["load_average_end"] = os.getloadavg()[0]
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
