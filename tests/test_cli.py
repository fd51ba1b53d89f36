"""Every command-line tool on tiny generated data, plus its errors (one line, non-zero exit)."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from galaxy_core import paths
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
    done = run("train.gradcam", "--checkpoint", ckpt, "--image", "100003", "--images",
               galaxy_folder["images"], "--method", "layercam", "--layer", "layer3", "--tta",
               "--out", str(png))
    assert done.returncode == 0, done.stderr
    assert "layercam for" in done.stderr and Image.open(png).size == (height, height)


@pytest.mark.parametrize("args, message", [
    (["train.predict", "--checkpoint", "/nonexistent.pt", "--images", ".", "--out", "x.csv"],
     "checkpoint not found"),
    (["train.evaluate", "--checkpoint", "{ckpt}", "--images", "/nope", "--labels", "/nope.csv"],
     "labels file not found"),
    (["train.gradcam", "--checkpoint", "{ckpt}", "--image", "/nope.jpg", "--out", "x.png"],
     "no such image"),
    (["train.train", "--images", "/nope", "--labels", "/nope.csv"], "labels file not found"),
    # a bad starting checkpoint fails before any image is read
    (["train.train", "--images", "/nope", "--labels", "/nope.csv", "--init-from", "/none.pt"],
     "checkpoint not found"),
    (["train.train", "--images", "/nope", "--labels", "/nope.csv", "--init-from", "{ckpt}",
      "--head", "plain"], "has a 'tree' output head"),
    (["train.train", "--images", "/nope", "--labels", "/nope.csv", "--init-from", "{ckpt}",
      "--resume", "{ckpt}"], "init_from and resume exclude each other"),
])
def test_errors_are_one_clear_line(trained, args, message):
    args = [a.replace("{ckpt}", str(trained / "best.pt")) for a in args]
    done = run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("tool", ["train.train", "train.predict", "train.evaluate", "train.gradcam",
                                  "train.sweep"])
def test_help(tool):
    done = run(tool, "--help")
    assert done.returncode == 0 and "usage" in done.stdout


def test_export_half_precision_and_model_card(trained, galaxy_folder, tmp_path):
    exported = tmp_path / "shipped.pt"
    done = run("train.export", "--checkpoint", str(trained / "best.pt"), "--out", str(exported),
               "--half", "--check-images", galaxy_folder["images"])
    assert done.returncode == 0, done.stderr
    assert "largest prediction change" in done.stderr
    import torch
    raw = torch.load(exported, weights_only=True)
    assert "optimizer_state" not in raw
    state = raw["state_dict"]
    assert state["backbone.layer4.1.conv2.weight"].dtype == torch.float16
    assert state["backbone.fc.3.weight"].dtype == torch.float32  # the head stays exact

    # an export whose predictions move too far is refused and leaves the old file as it was
    before = exported.read_bytes()
    done = run("train.export", "--checkpoint", str(trained / "best.pt"), "--out", str(exported),
               "--half", "--tolerance", "0", "--check-images", galaxy_folder["images"])
    assert done.returncode != 0 and "export changes predictions by" in done.stderr
    assert exported.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped.pt"]
    assert raw["exported_from"] == trained.name
    # exported again (in place, as when newer held-out scores are attached): the same weights,
    # and still named after the run it came from
    done = run("train.export", "--checkpoint", str(exported), "--out", str(exported), "--half",
               "--check-images", galaxy_folder["images"])
    assert done.returncode == 0, done.stderr
    again = torch.load(exported, weights_only=True)
    assert again["exported_from"] == trained.name
    assert all(torch.equal(again["state_dict"][k], v) for k, v in state.items())

    report = tmp_path / "eval.json"
    run("train.evaluate", "--checkpoint", str(exported), "--images", galaxy_folder["images"],
        "--labels", galaxy_folder["labels"], "--split", "val", "--json", str(report),
        "--workers", "0")
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps([{"name": "tiny", "epochs": 2, "best_val_rmse": 0.2,
                                     "minutes": 0.1}]))
    card = tmp_path / "card.md"
    done = run("train.model_card", "--checkpoint", str(exported), "--evaluation", str(report),
               "--variants", str(variants), "--out", str(card))
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    rmse = json.load(open(report))["model"]["rmse"]
    assert f"{rmse:.4f}" in text and "| tiny | 2 |" in text
    assert "ResNet18 from scratch (no ImageNet weights)" in text
    assert "**tree** output head (per-question softmax" in text
    assert "augmentation 'full' (any rotation, flips" in text


def test_all_data_model_ships_with_its_recipes_heldout_validation(trained, galaxy_folder,
                                                                   tmp_path):
    """--val-fraction 0 leaves no galaxies to test on; export attaches the held-out scores of
    the same recipe on a split (the `trained` run's final epoch), and the card and app report
    those."""
    all_data = tmp_path / "all"
    done = run("train.train", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(all_data), "--epochs", "2", "--batch-size",
               "8", "--image-size", "32", "--workers", "0", "--head", "tree", "--augment", "full",
               "--schedule", "onecycle", "--crop-fraction", "0.7", "--val-fraction", "0")
    assert done.returncode == 0, done.stderr
    reports = {}
    for tag, extra in (("plain", []), ("tta", ["--tta"])):
        reports[tag] = tmp_path / f"split_{tag}.json"
        done = run("train.evaluate", "--checkpoint", str(trained / "last.pt"), "--images",
                   galaxy_folder["images"], "--labels", galaxy_folder["labels"], "--split",
                   "val", "--json", str(reports[tag]), "--workers", "0", *extra)
        assert done.returncode == 0, done.stderr
    shipped = tmp_path / "shipped.pt"
    export = ["train.export", "--checkpoint", str(all_data / "last.pt"), "--out", str(shipped),
              "--check-images", galaxy_folder["images"]]
    done = run(*export, "--heldout", str(reports["plain"]), "--heldout-tta", str(reports["tta"]))
    assert done.returncode == 0, done.stderr

    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.registry import describe_model
    loaded = load_checkpoint(str(shipped))
    rmse = json.load(open(reports["plain"]))["model"]["rmse"]
    tta = json.load(open(reports["tta"]))["model"]["rmse"]
    split = loaded.meta["recipe_validation"]["splits"][0]
    assert split["model"]["rmse"] == rmse and split["model_tta"]["rmse"] == tta
    assert split["split_seed"] == 0
    info = describe_model(loaded)
    assert info["val_rmse"] is None and info["heldout"]["model"]["rmse"] == pytest.approx(rmse)
    assert "held-out RMSE" in info["accuracy"] and "none held out" in info["data"]
    assert f"**{tta:.4f}** averaged over 8 views" in info["accuracy"]

    card = tmp_path / "card.md"
    done = run("train.model_card", "--checkpoint", str(shipped), "--out", str(card))
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    assert "Accuracy on held-out galaxies" in text and f"{rmse:.4f}" in text
    assert f"{tta:.4f}" in text and "none held out" in text
    # the card counts agreement with the volunteers' majority of the 8-view predictions
    counted = json.load(open(reports["tta"]))["model"]["majority_agreement"]["Q1"]
    assert info["heldout"]["model_tta"]["majority_agreement"]["Q1"]["agreement"] == \
        pytest.approx(counted["agreement"])
    assert "top answer = volunteers' majority" in text
    assert f"| {100 * counted['agreement']:.1f}% (n = {counted['galaxies']}) |" in text

    # without --heldout an all-data model claims no accuracy at all
    bare = describe_model(load_checkpoint(str(all_data / "last.pt")))
    assert bare["val_rmse"] is None and bare["heldout"] is None
    assert bare["accuracy"].startswith("no held-out accuracy")

    # a card needs some held-out accuracy
    done = run("train.model_card", "--checkpoint", str(all_data / "last.pt"), "--out", str(card))
    assert done.returncode == 2 and "no validation of its own recipe" in done.stderr

    # the held-out runs must be of the same recipe, held out, and paired one to one
    other = json.load(open(reports["plain"]))
    other["train_config"]["image_size"] = 64
    (tmp_path / "other.json").write_text(json.dumps(other))
    whole = dict(json.load(open(reports["plain"])), split="all")
    (tmp_path / "whole.json").write_text(json.dumps(whole))
    chosen = dict(json.load(open(reports["plain"])), epoch=1)  # what best.pt at epoch 1 records
    (tmp_path / "chosen.json").write_text(json.dumps(chosen))
    for args, message in (
            (["--heldout", str(tmp_path / "other.json")], "another recipe (differs in image_size)"),
            (["--heldout", str(tmp_path / "whole.json")], "not held out"),
            (["--heldout", str(tmp_path / "chosen.json")], "scores epoch 1 of 2: score the run's "
             "final epoch (last.pt)"),
            (["--heldout", str(reports["plain"]), "--heldout-tta", str(reports["tta"]),
              str(reports["tta"])], "one file per --heldout file"),
            (["--heldout", str(tmp_path / "missing.json")], "cannot read"),
    ):
        done = run(*export, *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".venv", ".installed")),
                    reason="make model depends on the .venv that `make test` installs")
def test_make_model_runs_the_whole_shipping_pipeline(galaxy_folder, tmp_path):
    """The documented one command (`make model`), on 16 galaxies with a one-epoch recipe: two
    validation runs, the all-data run, their scores, the export and the card."""
    model_dir = tmp_path / "model"
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps([{"name": "tiny", "epochs": 1, "best_val_rmse": 0.2}]))
    command = ["make", "-s", "model", f"PY={sys.executable}", f"DATA={galaxy_folder['root']}",
               f"LABELS={galaxy_folder['labels']}", f"MODEL_DIR={model_dir}",
               f"RUNS={tmp_path / 'runs'}", f"CACHE={tmp_path / 'cache'}",
               f"VARIANTS={variants}", "TRAIN_DEVICE=cpu", "EPOCHS=1",
               "RECIPE=--image-size 32 --crop-fraction 0.7 --head tree --augment full "
               "--batch-size 8 --workers 0"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = sorted((tmp_path / "runs").glob("*/last.pt"))
    assert len(runs) == 4
    written = [os.path.getmtime(p) for p in runs]
    # run again (as after an interruption): finished runs are left as they are
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PYTHONPATH": ROOT})
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stderr.count("nothing left to train") == 4
    assert [os.path.getmtime(p) for p in runs] == written
    from galaxy_core.checkpoint import load_checkpoint
    shipped = load_checkpoint(str(model_dir / "galaxy_resnet18.pt"))
    assert shipped.meta["data"]["val_galaxies"] == 0
    assert [s["split_seed"] for s in shipped.meta["recipe_validation"]["splits"]] == [0, 1, 2]
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "Accuracy on held-out galaxies" in card and "| tiny | 1 |" in card
    assert (model_dir / "rmse_per_question.png").is_file()


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".venv", ".installed")),
                    reason="make learning-curve depends on the .venv that `make test` installs")
def test_make_learning_curve_trains_nested_shares_and_the_card_shows_them(galaxy_folder, tmp_path):
    done = subprocess.run(
        ["make", "-s", "learning-curve", f"PY={sys.executable}", f"DATA={galaxy_folder['root']}",
         f"LABELS={galaxy_folder['labels']}", f"RUNS={tmp_path / 'runs'}",
         f"CACHE={tmp_path / 'cache'}", "TRAIN_DEVICE=cpu", "EPOCHS=1",
         "RECIPE=--image-size 32 --crop-fraction 0.7 --head tree --batch-size 8 --workers 0"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = json.load(open(tmp_path / "runs" / "learning_curve" / "variants.json"))
    assert [r["train_galaxies"] for r in rows] == [6, 10, 13]  # 50%, 75%, 100% of 13
    assert {r["learning_curve"] for r in rows} == {"the shipped recipe on split 0"}
    assert {r["split_seed"] for r in rows} == {0}
    card = tmp_path / "card.md"
    done = run("train.model_card", "--checkpoint", paths.DEFAULT_MODEL, "--variants",
               str(tmp_path / "runs" / "learning_curve" / "variants.json"), "--out", str(card))
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    assert "## Accuracy against the amount of training data" in text
    assert "| 10 |" in text


def test_sweep_trains_variants_at_once_and_scores_the_split_runs(galaxy_folder, tmp_path):
    out = tmp_path / "sweep"
    common = "--image-size 32 --batch-size 8 --workers 0 --device cpu --head tree"
    done = run("train.sweep", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(out), "--common", common,
               "--variant", "s0=--seed 0", "--variant", "s1=--seed 1 --crop-fraction 0.7",
               "--variant", "all=--val-fraction 0", "--budget-s", "120", "--max-epochs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "seconds per epoch with all 3 sharing" in done.stderr
    rows = json.load(open(out / "variants.json"))
    assert [(r["name"], r["split_seed"], r["epochs"]) for r in rows] == [("s0", 0, 2), ("s1", 1, 2)]
    for row in rows:
        assert 0 < row["best_val_rmse"] < 1 and 0 < row["tta_rmse"] < 1
        report = json.load(open(out / "runs" / row["name"] / "eval.json"))
        assert report["model"]["rmse"] == row["best_val_rmse"]
    assert rows[1]["config"]["crop_fraction"] == 0.7
    assert [r["train_galaxies"] for r in rows] == [13, 13] and "learning_curve" not in rows[0]
    assert (out / "runs" / "all" / "last.pt").is_file()  # trained, not scored (nothing held out)

    # --epochs with --budget-s: the budget is a hard stop; what ran is scored, marked as stopped
    done = run("train.sweep", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(tmp_path / "cut"), "--common", common,
               "--variant", "s0=--seed 0", "--epochs", "100000", "--budget-s", "15",
               "--learning-curve", "a curve")
    assert done.returncode == 1 and "time budget spent" in done.stderr, done.stderr[-3000:]
    [row] = json.load(open(tmp_path / "cut" / "variants.json"))
    assert row["name"] == f"s0 (stopped at epoch {row['epochs']} of 100000)" and row["epochs"] >= 1
    assert 0 < row["best_val_rmse"] < 1 and "learning_curve" not in row

    for variant, message in (("bad=--image-sise 32", "unknown flag"),
                             ("bad=--epochs 3", "set by the sweep"),
                             ("bad=--head round", "invalid choice"),
                             ("no flags", "must look like")):
        done = run("train.sweep", "--images", galaxy_folder["images"], "--labels",
                   galaxy_folder["labels"], "--out", str(tmp_path / "x"), "--variant", variant,
                   "--epochs", "1")
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert not (tmp_path / "x" / "runs").exists()  # refused before anything ran
    done = run("train.sweep", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(tmp_path / "x"), "--variant", "s0=--seed 0")
    assert done.returncode == 2 and "give --epochs, --budget-s or both" in done.stderr


def test_make_samples_picks_validation_galaxies_only(galaxy_folder, tmp_path):
    out = tmp_path / "samples"
    done = run("train.make_samples", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(out), "--count", "3", "--val-fraction",
               "0.25")
    assert done.returncode == 0, done.stderr
    from galaxy_core.data import read_labels, split_train_val
    _, val = split_train_val(read_labels(galaxy_folder["labels"]), 0.25, 0)
    chosen = pd.read_csv(out / "labels.csv")["GalaxyID"]
    assert len(chosen) == 3 and set(chosen) <= set(val.galaxy_ids)
    assert len(os.listdir(out / "images")) == 3


def test_model_card_learning_curve_section_extrapolates_only_a_falling_curve():
    from train.model_card import _learning_curve_section

    def rows(rmses):
        return [{"name": f"recipe on {n}", "epochs": 85, "best_val_rmse": r + 0.001,
                 "tta_rmse": r, "tta_views": 8, "learning_curve": "split 0",
                 "train_galaxies": n} for n, r in zip((1600, 2400, 3200), rmses)]

    split = {"split_seed": 0, "model": {"rmse": 0.1}, "model_tta": {"rmse": 0.095},
             "mean_baseline": {"rmse": 0.18}}
    text = "\n".join(_learning_curve_section(rows([0.100, 0.096, 0.094]), [split], 4000))
    assert "| 2400 | 0.0970 | 0.0960 (8) |" in text
    assert "at 4000 galaxies" in text and "would score about" in text
    assert "no fit" not in text and "assumes the gain" not in text
    same = "\n".join(_learning_curve_section(rows([0.100, 0.096, 0.094]), [split], 4000, 85))
    assert "assumes the gain" not in same
    longer = "\n".join(_learning_curve_section(rows([0.100, 0.096, 0.094]), [split], 4000, 170))
    assert "the curve's runs trained 85 epochs and this model 170" in longer
    flat = "\n".join(_learning_curve_section(rows([0.100, 0.094, 0.096]), [split], 4000))
    assert flat.count("no fit") == 2 and "would score" not in flat
    assert _learning_curve_section([{"name": "x", "epochs": 1, "best_val_rmse": 0.1}], [], 4000) == []


def test_model_card_says_where_training_started():
    from train.model_card import starting_point

    assert starting_point({}) == "from scratch (no ImageNet weights)"
    assert "ImageNet weights" in starting_point({"pretrained": True})
    assert starting_point({"init_from": "/runs/a/last.pt", "pretrained": False}) == \
        "fine-tuned from `last.pt`"
