"""Every command-line tool on tiny generated data, plus its errors (one line, non-zero exit)."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from galaxy_core.schema import CSV_HEADER
from tests.conftest import make_galaxy_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@pytest.fixture(scope="module")
def galaxy_folder(tmp_path_factory):
    return make_galaxy_folder(tmp_path_factory.mktemp("galaxies"))


@pytest.fixture(scope="module")
def trained(galaxy_folder, tmp_path_factory):
    """One tiny training run shared by the tests of this module."""
    out = tmp_path_factory.mktemp("run")
    done = run("train.train", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(out), "--epochs", "2", "--batch-size", "8",
               "--image-size", "32", "--workers", "0", "--head", "tree", "--augment", "full",
               "--schedule", "onecycle", "--crop-fraction", "0.7")
    assert done.returncode == 0, done.stderr
    return out


def test_train_writes_checkpoints_history_and_curves(trained):
    for name in ("best.pt", "last.pt", "history.json", "curves.png"):
        assert (trained / name).is_file(), name
    assert len(json.load(open(trained / "history.json"))) == 2
    assert Image.open(trained / "curves.png").size[0] > 200


def test_predict_evaluate_gradcam(trained, galaxy_folder, tmp_path):
    ckpt = str(trained / "best.pt")
    out_csv = tmp_path / "pred.csv"
    done = run("train.predict", "--checkpoint", ckpt, "--images", galaxy_folder["images"],
               "--out", str(out_csv), "--tta", "--workers", "0")
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out_csv)
    assert list(frame.columns) == list(CSV_HEADER) and len(frame) == 16

    report = tmp_path / "report.json"
    done = run("train.evaluate", "--checkpoint", ckpt, "--images", galaxy_folder["images"],
               "--labels", galaxy_folder["labels"], "--json", str(report), "--plots",
               str(tmp_path / "plots"), "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert "overall" in done.stdout
    assert 0 < json.load(open(report))["model"]["rmse"] < 1
    assert (tmp_path / "plots" / "pred_vs_true.png").is_file()

    done = run("train.evaluate", "--checkpoint", ckpt, "--images", galaxy_folder["images"],
               "--labels", galaxy_folder["labels"], "--split", "val", "--json", str(report),
               "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert json.load(open(report))["model"]["galaxies"] == 3  # 20% of 16, as trained
    assert "training galaxies' mean" in done.stdout

    png = tmp_path / "cam.png"
    done = run("train.gradcam", "--checkpoint", ckpt, "--image", "100003", "--images",
               galaxy_folder["images"], "--answer", "Class1.2", "--method", "gradcam++",
               "--side-by-side", "--out", str(png))
    assert done.returncode == 0, done.stderr
    width, height = Image.open(png).size
    assert width == 3 * height


@pytest.mark.parametrize("args, message", [
    (["train.predict", "--checkpoint", "/nonexistent.pt", "--images", ".", "--out", "x.csv"],
     "checkpoint not found"),
    (["train.evaluate", "--checkpoint", "{ckpt}", "--images", "/nope", "--labels", "/nope.csv"],
     "labels file not found"),
    (["train.gradcam", "--checkpoint", "{ckpt}", "--image", "/nope.jpg", "--out", "x.png"],
     "no such image"),
    (["train.train", "--images", "/nope", "--labels", "/nope.csv"], "labels file not found"),
])
def test_errors_are_one_clear_line(trained, args, message):
    args = [a.replace("{ckpt}", str(trained / "best.pt")) for a in args]
    done = run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("tool", ["train.train", "train.predict", "train.evaluate", "train.gradcam"])
def test_help(tool):
    done = run(tool, "--help")
    assert done.returncode == 0 and "usage" in done.stdout
