"""What decoding one large upload costs in memory: by default a 39.6-megapixel 16-bit greyscale
PNG (a 90 KB file, under the 40 MP limit), prepared as the app prepares an upload.

    python -m bench.decode_memory [--mode {I;16,RGBA,RGB}] [--width 7000 --height 5657]
                                  [--size 320]

Each measurement runs in a fresh process, so its peak resident memory (``ru_maxrss``) is this
decode's alone: the figure printed is the peak minus the resident memory just before decoding.
``tracemalloc`` adds the peak of what Python and numpy allocated (Pillow's own image buffers
are not traced, so traced is a lower bound and RSS the real cost).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MEASURE = """
import json, resource, sys, tracemalloc
from galaxy_core.images import prepare
path, size = sys.argv[1], int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
prepare(path, size, 1.0)
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_peak_mb": (after - before) / 1024, "traced_peak_mb": traced / 2**20}))
"""


BANDS = {"I;16": 1, "RGB": 3, "RGBA": 4}
SAMPLE_BYTES = {"I;16": 2, "RGB": 1, "RGBA": 1}


def ramp_png(path, mode: str, width: int, height: int) -> None:
    """A smooth ramp in ``mode``: tiny as a PNG, large once decoded (the alpha of RGBA ramps
    down the rows, so compositing over black sky has work to do)."""
    if mode == "I;16":
        row = np.linspace(0, 65535, width).astype(np.uint16)
        image = Image.fromarray(np.broadcast_to(row, (height, width)).copy())
    else:
        row = np.linspace(0, 255, width).astype(np.uint8)
        image = Image.fromarray(np.broadcast_to(row, (height, width)).copy()).convert(mode)
        if mode == "RGBA":
            column = np.linspace(0, 255, height).astype(np.uint8)[:, None]
            image.putalpha(Image.fromarray(np.broadcast_to(column, (height, width)).copy()))
    image.save(path, compress_level=9)


def measure(path, size: int) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(size)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT},
                          check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(BANDS), default="I;16")
    parser.add_argument("--width", type=int, default=7000)
    parser.add_argument("--height", type=int, default=5657)
    parser.add_argument("--size", type=int, default=320, help="output side (the app's display "
                        "crop is 320)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.png")
        ramp_png(path, args.mode, args.width, args.height)
        result = measure(path, args.size)
        file_kb = os.path.getsize(path) / 1024
    pixels = args.width * args.height
    decoded = pixels * BANDS[args.mode] * SAMPLE_BYTES[args.mode]
    print(f"{args.width}x{args.height} {args.mode} PNG ({pixels / 1e6:.1f} MP, {file_kb:.0f} KB "
          f"file, {decoded / 1e6:.0f} MB decoded)")
    if "error" in result:
        print(f"  refused: {result['error']}")
        return 1
    print(f"  peak RSS added by decoding: {result['rss_peak_mb']:7.1f} MB")
    print(f"  peak traced (Python/numpy): {result['traced_peak_mb']:7.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
