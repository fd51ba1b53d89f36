"""The benchmark runs end to end on 8 images, and every ratio it reports is the quotient of the
two timings it names, as printed. No speed is asserted here (this is a smoke run on a busy
machine; speed is judged from `make bench` output, not from tests)."""

import json
import re

import pytest

from bench import run as bench
from bench.run import TARGETS

# each reported ratio: (numerator, denominator) among the raw figures; `small` and `large` are
# the two folder sizes of the memory measurement
RATIOS = {
    "single_image_latency_ratio": ("single_image_end_to_end_s", "forward_b1_s"),
    "batch_predict_throughput_ratio": ("batch_predict_images_per_s", "forward_images_per_s"),
    "batch_predict_speedup_vs_seed": ("batch_predict_images_per_s",
                                      "seed_pipeline_images_per_s"),
    "training_epoch_throughput_ratio": ("training_epoch_images_per_s",
                                        "forward_backward_images_per_s"),
    "gradcam_latency_ratio": ("gradcam_s", "forward_backward_b1_s"),
    "batch_predict_memory_ratio_4000_vs_400": ("predict_peak_rss_mb_{large}",
                                               "predict_peak_rss_mb_{small}"),
}
CONTEXT = {
    "bfloat16_speedup_vs_seed": ("batch_predict_bfloat16_images_per_s",
                                 "seed_pipeline_images_per_s"),
    "speedup_vs_seed_as_shipped_224px": ("batch_predict_images_per_s",
                                         "seed_as_shipped_224px_images_per_s"),
    "training_bfloat16_speedup": ("training_bfloat16_epoch_images_per_s",
                                  "training_epoch_images_per_s"),
    "gradcam_8_views_vs_forward_backward_b1": ("gradcam_8_views_s", "forward_backward_b1_s"),
}


def printed(section_lines, name):
    """The number printed after ``name`` in the benchmark's table."""
    [line] = [line for line in section_lines if line.split() and line.split()[0] == name]
    return line.split()[1:]


def test_quick_benchmark_reports_each_ratio_from_its_own_timings(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0  # in this process: no torch import
    lines = capsys.readouterr().out.splitlines()
    report = json.load(open(out))
    raw = report["absolute"]
    sizes = sorted(int(m.group(1)) for key in raw
                   if (m := re.fullmatch(r"predict_peak_rss_mb_(\d+)", key)))
    assert sizes == [16, 160]  # --quick: 16 and 160 images stand in for 400 and 4000
    assert all(value > 0 for value in raw.values())

    assert set(report["ratios"]) == set(TARGETS) == set(RATIOS)
    for name, (top, bottom) in RATIOS.items():
        top, bottom = (key.format(small=sizes[0], large=sizes[1]) for key in (top, bottom))
        assert report["ratios"][name] == pytest.approx(raw[top] / raw[bottom], rel=1e-9), name
        value, target, ok = printed(lines, name)
        assert float(value) == pytest.approx(report["ratios"][name], abs=6e-4), name
        op, limit = TARGETS[name]
        assert target == f"{op}{limit}" and report["targets"][name] == f"{op} {limit}"
        met = report["ratios"][name] <= limit if op == "<=" else report["ratios"][name] >= limit
        assert ok == ("yes" if met else "NO"), name
    assert set(report["context"]) == set(CONTEXT)
    for name, (top, bottom) in CONTEXT.items():
        assert report["context"][name] == pytest.approx(raw[top] / raw[bottom], rel=1e-9), name
        assert float(printed(lines, name)[0]) == pytest.approx(report["context"][name],
                                                               abs=6e-4), name
    for name, value in raw.items():
        assert float(printed(lines, name)[0]) == pytest.approx(value, abs=6e-5), name

    # the inference choices: the one in use leaves the outputs as they were (< 1e-3, the
    # export tolerance), and its speed is the forward throughput measured on its own
    choices = report["inference_choices"]
    used = choices["BatchNorm folded + channels-last (used)"]
    assert used["max_abs_change"] < 1e-3 and used["images_per_s"] > 0
    assert report["machine"]["quick"] is True and report["machine"]["images"] == 8
