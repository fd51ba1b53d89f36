"""torchrun with 2 CPU processes (Gloo): DDP training and sharded prediction match one process."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from galaxy_core.checkpoint import load_checkpoint
from galaxy_core.evaluate import evaluate, training_split
from tests.conftest import make_galaxy_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, nproc=None):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={nproc}", "-m"] if nproc else [sys.executable, "-m"]
    done = subprocess.run([*launcher, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_galaxy_folder(tmp_path_factory.mktemp("galaxies"))


@pytest.fixture(scope="module")
def ddp_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    run("train.train", "--images", folder["images"], "--labels", folder["labels"],
        "--out", str(out), "--epochs", "2", "--batch-size", "4", "--image-size", "32",
        "--workers", "0", "--head", "tree", "--val-fraction", "0.25", "--device", "cpu",
        "--cache-dir", str(out / "cache"), nproc=2)
    return out


def test_ddp_validation_rmse_equals_single_process(ddp_run, folder):
    history = json.load(open(ddp_run / "history.json"))
    assert [h["epoch"] for h in history] == [1, 2]
    loaded = load_checkpoint(ddp_run / "last.pt")  # loads like any checkpoint (no 'module.')
    assert loaded.meta["data"]["world_size"] == 2
    _, val = training_split(loaded, folder["labels"])
    single = evaluate(loaded, folder["images"], folder["labels"], workers=0, table=val)
    assert single.report["rmse"] == pytest.approx(history[-1]["val_rmse"], abs=1e-5)


def test_ddp_resume_and_only_rank_zero_writes(ddp_run, folder):
    names = sorted(p.name for p in ddp_run.iterdir())
    assert names == [".lock", "best.pt", "cache", "curves.png", "history.json", "last.pt"]
    run("train.train", "--images", folder["images"], "--labels", folder["labels"],
        "--out", str(ddp_run), "--epochs", "3", "--batch-size", "4", "--image-size", "32",
        "--workers", "0", "--head", "tree", "--val-fraction", "0.25", "--device", "cpu",
        "--resume", str(ddp_run / "last.pt"), nproc=2)
    assert [h["epoch"] for h in json.load(open(ddp_run / "history.json"))] == [1, 2, 3]


def test_sharded_prediction_csv_equals_single_process(ddp_run, folder, tmp_path):
    images = tmp_path / "images"  # 15 of the galaxies: uneven shards
    shutil.copytree(folder["images"], images)
    os.remove(images / f"{folder['ids'][5]}.jpg")
    Image.new("RGB", (424, 424), (200, 200, 200)).save(images / "9999999.jpg")  # flagged: blank
    single, sharded = tmp_path / "single.csv", tmp_path / "sharded.csv"
    common = ["--checkpoint", str(ddp_run / "best.pt"), "--images", str(images),
              "--workers", "0", "--device", "cpu", "--batch-size", "4"]
    from train.predict import main as predict  # one process: this one (no torch import)
    assert predict([*common, "--out", str(single),
                    "--flags", str(tmp_path / "single_flags.csv")]) == 0
    run("train.predict", *common, "--out", str(sharded), "--flags",
        str(tmp_path / "sharded_flags.csv"), nproc=2)
    a, b = pd.read_csv(single), pd.read_csv(sharded)
    assert len(a) == 16 and a["GalaxyID"].is_unique
    assert list(a["GalaxyID"]) == list(b["GalaxyID"])
    pd.testing.assert_frame_equal(a, b, atol=1e-5, check_exact=False)
    # the flags of the merged shards judge each image with its own prediction's frame
    flags = pd.read_csv(tmp_path / "single_flags.csv")
    assert 9999999 in set(flags["GalaxyID"])
    pd.testing.assert_frame_equal(flags, pd.read_csv(tmp_path / "sharded_flags.csv"))


def test_a_dying_rank_stops_the_job_instead_of_hanging(tmp_path):
    """Kill one of two workers mid-training: torchrun must end the job with an error."""
    import signal
    import time
    (tmp_path / "galaxies").mkdir()
    folder = make_galaxy_folder(tmp_path / "galaxies")
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "train.train", "--images", folder["images"], "--labels", folder["labels"],
         "--out", str(tmp_path / "run"), "--epochs", "200", "--batch-size", "2",
         "--image-size", "32", "--workers", "0", "--device", "cpu"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "last.pt").exists():  # training is under way
            assert time.time() < deadline and job.poll() is None, "training never started"
            time.sleep(0.5)
        with open(f"/proc/{job.pid}/task/{job.pid}/children") as handle:
            workers = [int(p) for p in handle.read().split()]
        assert len(workers) == 2
        os.kill(workers[-1], signal.SIGKILL)
        output, _ = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    assert "FAILED" in output or "failed" in output.lower()
