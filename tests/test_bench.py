"""Smoke test: the benchmark runs end to end on 8 images and writes every ratio (no timing
assertions here; speed is judged from `make bench` output, not from tests)."""

import json
import os
import subprocess
import sys

from bench.run import TARGETS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_benchmark_writes_all_ratios(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.load(open(out))
    assert set(report["ratios"]) == set(TARGETS)
    assert all(value > 0 for value in report["ratios"].values())
    assert "BatchNorm folded + channels-last (used)" in report["inference_choices"]
    assert report["context"]["bfloat16_speedup_vs_seed"] > 0
    assert report["context"]["speedup_vs_seed_as_shipped_224px"] > 0
    assert report["context"]["training_bfloat16_speedup"] > 0
    assert report["context"]["gradcam_8_views_vs_forward_backward_b1"] > 0
