"""What each step of the Grad-CAM page costs, as a ratio to one image's forward and backward
pass measured in the same run (shipped model, a shipped sample, the page's defaults: 8 views,
the default layer, the verdict's first answer). Numbers, not pass/fail.

    python -m bench.gradcam [--quick] [--repeats 5]

Each step is timed on a freshly seen image where it would be fresh on the page (so a "new
answer" includes its backward pass), median of ``--repeats``. "before" is what the page did on
every change until the image was kept: a full forward and backward over the 8 views.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from galaxy_core import paths
from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.data import list_images
from galaxy_core.explain import (DEFAULT_LAYER, DEFAULT_METHOD, LAYERS, METHODS, compute_cam,
                                 explain_source, overlay)
from galaxy_core.faithfulness import score_map
from galaxy_core.images import prepare_for_model


def median_time(setup, step, repeats: int, warm_up: bool = True) -> float:
    """Median seconds of ``step(setup())`` (setup not timed), after one warm-up."""
    if warm_up:
        step(setup())
    times = []
    for _ in range(repeats):
        state = setup()
        start = time.perf_counter()
        step(state)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gradcam", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat, no warm-up: smoke only")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    loaded = load_checkpoint(paths.DEFAULT_MODEL)
    source = list_images(paths.SAMPLE_IMAGES)[0]
    size = loaded.preprocess.image_size
    net = loaded.net.eval()
    x_one = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)

    def forward_backward(_):
        x = x_one.clone().requires_grad_(True)
        net(x)[0, 0].backward()
        for param in net.parameters():
            param.grad = None

    def seen():
        return explain_source(loaded, source, tta=True)

    def seen_with_answer():
        explained = seen()
        explained.heatmap(explained.default_answer(), DEFAULT_METHOD, DEFAULT_LAYER)
        return explained

    def other_answer(explained):
        return next(c for c in loaded.trained_columns if c != explained.default_answer())

    image = prepare_for_model(source, loaded.preprocess)
    steps = {
        "before: any change (fresh 8-view pass)": (
            lambda: None, lambda _: compute_cam(loaded, image, None, DEFAULT_METHOD, DEFAULT_LAYER,
                                                tta=True)),
        "first look: 8-view pass + map + verdict row + scores": (
            lambda: None, lambda _: first_look(seen())),
        "opacity step (re-blend)": (
            seen_with_answer, lambda e: overlay(e.display, e.heatmap(
                e.default_answer(), DEFAULT_METHOD, DEFAULT_LAYER), 0.5)),
        "new answer (backward + map + scores)": (
            seen_with_answer, lambda e: scored(e, other_answer(e), DEFAULT_METHOD, DEFAULT_LAYER)),
        "new method (map + scores)": (
            seen_with_answer, lambda e: scored(e, e.default_answer(), next(
                m for m in METHODS if m != DEFAULT_METHOD), DEFAULT_LAYER)),
        # a backward pass down to a layer keeps the gradients of every later one: only a layer
        # deeper than the default needs a new pass
        "new layer (map + scores; + a backward if deeper)": (
            seen_with_answer, lambda e: scored(e, e.default_answer(), DEFAULT_METHOD, next(
                layer for layer in LAYERS if layer != DEFAULT_LAYER))),
        "five-method comparison": (
            seen_with_answer, lambda e: [overlay(e.display, e.heatmap(e.default_answer(), m,
                                                                      DEFAULT_LAYER), 0.45)
                                         for m in METHODS]),
        "deletion + insertion scores alone": (
            seen_with_answer, lambda e: score_map(e, e.default_answer(), e.heatmap(
                e.default_answer(), DEFAULT_METHOD, DEFAULT_LAYER))),
    }
    warm_up = not args.quick
    reference = median_time(lambda: None, forward_backward, repeats * 4, warm_up)
    print(f"load average {os.getloadavg()}; torch threads {torch.get_num_threads()}; "
          f"default layer {DEFAULT_LAYER}; one image's forward+backward {reference * 1e3:.1f} ms")
    print(f"{'step':54s} {'ms':>8s} {'x fwd+bwd':>10s}")
    for name, (setup, step) in steps.items():
        seconds = median_time(setup, step, repeats, warm_up)
        print(f"{name:54s} {seconds * 1e3:8.1f} {seconds / reference:10.3f}")
    return 0


def scored(explained, answer, method, layer):
    heatmap = explained.heatmap(answer, method, layer)
    overlay(explained.display, heatmap, 0.45)
    return score_map(explained, answer, heatmap)


def first_look(explained):
    answer = explained.default_answer()
    scored(explained, answer, DEFAULT_METHOD, DEFAULT_LAYER)
    return [overlay(explained.display, m, 0.45)
            for _, m in explained.verdict_maps(DEFAULT_METHOD, DEFAULT_LAYER)]


if __name__ == "__main__":
    sys.exit(main())
