"""Smoke test: the Grad-CAM benchmark runs and prints a ratio for every step of the page (no
timing assertions; speed is judged from its output, not from tests)."""

import re

from bench.gradcam import main


def test_gradcam_bench_prints_every_ratio(capsys):
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "one image's forward+backward" in out and "load average" in out
    for step in ("before: any change", "first look", "opacity step", "new answer", "new method",
                 "new layer", "five-method comparison", "deletion + insertion scores"):
        line = next(line for line in out.splitlines() if line.startswith(step))
        ms, ratio = map(float, re.findall(r"\d+\.\d+", line)[-2:])
        assert ms > 0 and ratio >= 0, line  # a re-blend may round to 0.000
