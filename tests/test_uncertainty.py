"""Calibrated intervals: the conformal quantile, coverage on fresh data, storage in a checkpoint
and the calibrate CLI."""

import importlib
import math

import numpy as np
import pytest
import torch
from PIL import Image

from galaxy_core.checkpoint import CheckpointError, atomic_save, load_checkpoint, read_checkpoint
from galaxy_core.schema import ANSWER_COLUMNS, NUM_ANSWERS
from galaxy_core.uncertainty import (FLAGS_COLUMN, Calibration, bounds, conformal_quantile,
                                     coverage, cross_fitted_coverage, fit)
from tests.conftest import make_galaxy_folder
from train.common import run_cli

LEARNED = 5  # the synthetic galaxies below have targets for the first five answers


def synthetic(n, seed):
    """Predictions and volunteer fractions whose error grows with sqrt(p(1-p)), as vote
    fractions' do; unknown (NaN) beyond the first LEARNED answers."""
    rng = np.random.default_rng(seed)
    preds = rng.uniform(0, 1, (n, NUM_ANSWERS))
    noise = rng.laplace(0, 0.08, (n, NUM_ANSWERS)) * (np.sqrt(preds * (1 - preds)) + 0.05) * 2
    targets = np.clip(preds + noise, 0, 1)
    targets[:, LEARNED:] = np.nan
    return preds, targets


def test_the_conformal_quantile_is_the_ceil_n_plus_1_level_th_smallest():
    scores = np.arange(1.0, 10.0)  # 1..9
    assert conformal_quantile(scores[::-1], 0.8) == 8.0  # ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(scores, 0.5) == 5.0
    assert conformal_quantile(np.array([1.0, 2.0, 3.0]), 0.8) == math.inf  # too few to promise


@pytest.mark.parametrize("scale", ["binomial", "constant"])
def test_intervals_hold_the_volunteers_fraction_at_their_level_on_new_galaxies(scale):
    calibration = fit(*synthetic(3000, seed=0), level=0.8, scale=scale)
    assert calibration.columns == ANSWER_COLUMNS[:LEARNED]
    report = coverage(calibration, *synthetic(3000, seed=1))
    for column in ANSWER_COLUMNS[:LEARNED]:
        assert 0.77 <= report["per_answer"][column]["coverage"] <= 0.83, column
    assert report["all"]["n"] == 3000 * LEARNED
    # a 50% interval is narrower and holds about half
    half = coverage(fit(*synthetic(3000, seed=0), level=0.5, scale=scale), *synthetic(3000, 1))
    assert 0.47 <= half["all"]["coverage"] <= 0.53
    assert half["all"]["mean_width"] < report["all"]["mean_width"]


def test_the_binomial_scale_narrows_intervals_near_0_and_1():
    calibration = fit(*synthetic(3000, seed=0))
    low, high = bounds(calibration, np.full((2, NUM_ANSWERS), [[0.02], [0.5]]))
    assert (high - low)[0, 0] < 0.5 * (high - low)[1, 0]
    assert np.all(np.isnan(low[:, LEARNED:]))  # uncalibrated answers get no interval


def test_bounds_stay_inside_0_and_1():
    calibration = Calibration(level=0.8, quantiles={c: 5.0 for c in ANSWER_COLUMNS})
    low, high = bounds(calibration, np.random.default_rng(0).uniform(0, 1, (10, NUM_ANSWERS)))
    assert low.min() == 0.0 and high.max() == 1.0


def test_cross_fitting_measures_coverage_without_using_a_galaxy_twice():
    preds, targets = synthetic(2000, seed=2)
    report = cross_fitted_coverage(preds, targets, level=0.8)
    assert 0.77 <= report["all"]["coverage"] <= 0.83
    assert report["all"]["n"] == 2000 * LEARNED
    assert set(report["per_question"]) == {"Q1", "Q2"}  # answers 1.1-1.3 and 2.1-2.2
    # intervals fitted on other galaxies whose errors were half as large under-cover
    preds_small, targets_small = synthetic(2000, seed=3)
    targets_small = preds_small + (targets_small - preds_small) / 2
    assert coverage(fit(preds_small, targets_small), preds, targets)["all"]["coverage"] < 0.7


@pytest.mark.parametrize("change, message", [
    ({"level": 1.5}, "level must be in"),
    ({"scale": "gaussian"}, "scale must be one of"),
    ({"quantiles": {"Class99.1": 0.1}}, "unknown answer columns"),
    ({"quantiles": {"Class1.1": -1}}, ">= 0"),
    ({"quantiles": {"Class1.1": float("nan")}}, ">= 0"),
    ({"quantiles": "many"}, "damaged intervals"),
])
def test_a_damaged_calibration_is_refused_when_the_checkpoint_loads(checkpoint_file, tmp_path,
                                                                     change, message):
    good = Calibration(level=0.8, quantiles={"Class1.1": 0.5}).to_dict()
    raw = read_checkpoint(checkpoint_file)
    raw["intervals"] = good
    atomic_save(raw, tmp_path / "good.pt")
    loaded = load_checkpoint(tmp_path / "good.pt")
    assert loaded.calibration == Calibration.from_dict(good)
    assert load_checkpoint(checkpoint_file).calibration is None  # not calibrated: no intervals
    raw["intervals"] = {**good, **change}
    atomic_save(raw, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.pt")


def calibrate(*argv):
    with pytest.raises(SystemExit) as exit:
        run_cli(lambda: importlib.import_module("train.calibrate").main([str(a) for a in argv]))
    return exit.value.code


@pytest.fixture(scope="module")
def run_with_held_out_galaxies(tmp_path_factory):
    """A one-epoch run on 16 generated galaxies that holds 12 out."""
    folder = make_galaxy_folder(tmp_path_factory.mktemp("galaxies"))
    out = tmp_path_factory.mktemp("run")
    with pytest.raises(SystemExit) as exit:
        run_cli(lambda: importlib.import_module("train.train").main(
            ["--images", folder["images"], "--labels", folder["labels"], "--out", str(out),
             "--epochs", "1", "--batch-size", "4", "--image-size", "32", "--workers", "0",
             "--val-fraction", "0.75", "--head", "tree"]))
    assert exit.value.code == 0
    return folder, out / "last.pt"


def test_calibrate_stores_intervals_in_another_model_and_leaves_its_weights(
        run_with_held_out_galaxies, checkpoint_file, tmp_path, capsys):
    folder, run = run_with_held_out_galaxies
    before = read_checkpoint(checkpoint_file)["state_dict"]
    assert calibrate("--checkpoint", run, "--images", folder["images"], "--labels",
                     folder["labels"], "--into", checkpoint_file, "--json",
                     tmp_path / "calibration.json") == 0
    out = capsys.readouterr().out
    assert "binomial scale, nominal 80%" in out and "constant scale" in out
    loaded = load_checkpoint(checkpoint_file)
    assert loaded.calibration.level == 0.8
    learned = load_checkpoint(run).trained_columns
    assert loaded.calibration.columns == tuple(c for c in ANSWER_COLUMNS if c in learned)
    assert "12 galaxies held out by" in loaded.calibration.source
    assert loaded.calibration.coverage["all"]["n"] == 12 * len(loaded.calibration.columns)
    after = read_checkpoint(checkpoint_file)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert load_checkpoint(run).calibration is None  # the run itself was not touched


def test_match_heldout_scales_each_quantile_by_the_rmse_ratio_of_the_same_split(
        run_with_held_out_galaxies, tmp_path):
    import json
    folder, run = run_with_held_out_galaxies
    plain, matched = tmp_path / "plain.json", tmp_path / "matched.json"
    assert calibrate("--checkpoint", run, "--images", folder["images"], "--labels",
                     folder["labels"], "--into", tmp_path / "unused.pt", "--json", plain) == 2
    into = tmp_path / "model.pt"
    into.write_bytes(open(run, "rb").read())
    assert calibrate("--checkpoint", run, "--images", folder["images"], "--labels",
                     folder["labels"], "--into", into, "--json", plain) == 0
    own = json.loads(plain.read_text())["run_rmse_per_answer"]
    raw = read_checkpoint(run)
    report = {"split": "val", "train_config": raw["train_config"],
              "model": {"per_answer": {c: (v / 2 if v else v) for c, v in own.items()}}}
    (tmp_path / "recipe.json").write_text(json.dumps(report))
    assert calibrate("--checkpoint", run, "--images", folder["images"], "--labels",
                     folder["labels"], "--into", into, "--match-heldout",
                     tmp_path / "recipe.json", "--json", matched) == 0
    first, second = json.loads(plain.read_text()), json.loads(matched.read_text())
    for column, q in first["quantiles"].items():
        assert second["quantiles"][column] == pytest.approx(q / 2)
    # the recipe's RMSE must come from the same split
    report["train_config"] = {**raw["train_config"], "seed": 7}
    (tmp_path / "other.json").write_text(json.dumps(report))
    assert calibrate("--checkpoint", run, "--images", folder["images"], "--labels",
                     folder["labels"], "--into", into, "--match-heldout",
                     tmp_path / "other.json") == 2


def test_calibrate_refuses_a_run_without_its_split_and_a_bad_level(
        run_with_held_out_galaxies, checkpoint_file, tmp_path, capsys):
    folder, _ = run_with_held_out_galaxies
    assert calibrate("--checkpoint", checkpoint_file, "--images", folder["images"], "--labels",
                     folder["labels"]) == 2
    assert "does not record its training split" in capsys.readouterr().err
    assert calibrate("--checkpoint", checkpoint_file, "--images", folder["images"], "--labels",
                     folder["labels"], "--level", "1.2") == 2
    assert "--level must be between 0 and 1" in capsys.readouterr().err


def test_the_transfer_bench_compares_borrowed_intervals_with_the_targets_own(
        run_with_held_out_galaxies, tmp_path, capsys):
    import json
    from bench.intervals import main as bench_main
    folder, run = run_with_held_out_galaxies
    assert bench_main(["--images", folder["images"], "--labels", folder["labels"], "--source",
                       str(run), "--target", str(run), "--json", str(tmp_path / "t.json")]) == 0
    assert "12 held-out galaxies" in capsys.readouterr().out
    reports = json.loads((tmp_path / "t.json").read_text())["reports"]
    # a model borrowing its own residuals: all three intervals are the same
    own = reports["target's own"]["all"]
    assert reports["source's as they are"]["all"] == own == reports["source's scaled"]["all"]
    assert own["n"] == 12 * len(load_checkpoint(run).trained_columns)


def test_the_size_bench_counts_coverage_by_the_galaxys_size_in_its_frame(
        run_with_held_out_galaxies, tmp_path, capsys):
    import json
    from bench.interval_sizes import by_size, main as sizes_main
    folder, run = run_with_held_out_galaxies
    assert sizes_main(["--images", folder["images"], "--labels", folder["labels"],
                       "--checkpoint", str(run), "--json", str(tmp_path / "s.json")]) == 0
    assert "12 held-out galaxies" in capsys.readouterr().out
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert sum(row["galaxies"] for row in rows) == 12
    # every galaxy counted once, in the bin of its own size: galaxies whose residuals grow
    # with their size get intervals that hold less often the larger they are
    preds, targets = synthetic(4000, 7)
    r50 = np.random.default_rng(8).uniform(0.05, 0.2, 4000)
    targets = np.clip(preds + (targets - preds) * (r50 / 0.1)[:, None], 0, 1)
    rows = by_size(preds, targets, r50)
    assert [row["galaxies"] for row in rows] == [2000, 1000, 600, 200, 200]
    assert rows[0]["coverage"] > 0.85 and rows[-1]["coverage"] < 0.7
    assert by_size(preds, targets, np.full(4000, np.nan))[0]["r50"] == "no source found"


def predict(*argv):
    with pytest.raises(SystemExit) as exit:
        run_cli(lambda: importlib.import_module("train.predict").main([str(a) for a in argv]))
    return exit.value.code


def test_predict_writes_each_learned_answers_interval_beside_the_kaggle_csv(tmp_path, capsys,
                                                                          checkpoint_file):
    import os

    import pandas as pd

    from galaxy_core import paths
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(os.listdir(paths.SAMPLE_IMAGES))[:2]:
        (images / name).write_bytes(open(os.path.join(paths.SAMPLE_IMAGES, name), "rb").read())
    Image.new("RGB", (424, 424), (200, 200, 200)).save(images / "blank.png")  # flagged
    out, intervals = tmp_path / "pred.csv", tmp_path / "intervals.csv"
    assert predict("--images", images, "--out", out, "--intervals", intervals,
                   "--workers", "0") == 0
    preds = pd.read_csv(out)
    table = pd.read_csv(intervals)
    calibration = load_checkpoint(paths.DEFAULT_MODEL).calibration
    assert list(table.columns) == ["GalaxyID"] + [f"{c}_{end}" for c in calibration.columns
                                                  for end in ("low", "high")] + [FLAGS_COLUMN]
    assert list(table["GalaxyID"]) == list(preds["GalaxyID"])
    # the blank image keeps its prediction but gets no interval, and the last column says why
    blank = table["GalaxyID"] == "blank"
    assert table[blank].drop(columns=["GalaxyID", FLAGS_COLUMN]).isna().all().all()
    assert "blank" in table.loc[blank, FLAGS_COLUMN].iloc[0]
    table, preds = table[~blank], preds[~blank.to_numpy()]
    assert table[FLAGS_COLUMN].isna().all()  # an empty cell: not flagged
    for column in calibration.columns:
        assert (table[f"{column}_low"] <= preds[column] + 1e-6).all()
        assert (preds[column] <= table[f"{column}_high"] + 1e-6).all()
        assert (table[f"{column}_high"] > table[f"{column}_low"]).all()
    # a model without intervals is refused before any image is read
    capsys.readouterr()
    assert predict("--checkpoint", checkpoint_file, "--images", images, "--out",
                   tmp_path / "x.csv", "--intervals", tmp_path / "y.csv") == 2
    assert "carries no calibrated intervals" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
