"""Every command-line tool on tiny generated data, plus its errors (one line, exit code 2).

Most cases call a tool's ``main(argv)`` in this process, through ``train.common.run_cli`` as
``python -m train.<tool>`` does (so the one ``error:`` line and the exit code are the real
ones), with logging reset to what a fresh process has. The tests marked ``e2e`` run each tool
as its own process, as a user does, and run ``make model`` and ``make learning-curve`` once.
"""

import ast
import importlib
import json
import logging
import os
import shlex
import subprocess
import sys
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from galaxy_core import paths
from galaxy_core.schema import CSV_HEADER
from tests.conftest import make_galaxy_folder
from train.common import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = sorted(f"train.{name[:-3]}" for name in os.listdir(os.path.join(ROOT, "train"))
               if name.endswith(".py") and name not in ("__init__.py", "common.py"))
HAS_VENV = os.path.exists(os.path.join(ROOT, ".venv", ".installed"))
e2e = pytest.mark.e2e


def run(*args, timeout=300):
    """``python -m <args>`` in a fresh process, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


@contextmanager
def fresh_process_logging():
    """The root logger as a new process has it (no handlers), so the tool's setup_logging
    (logging.basicConfig, which does nothing once the root has a handler) installs its own
    handler on the current, captured, stderr; pytest's handlers and level come back after."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = saved_handlers, saved_level


@pytest.fixture
def cli(capsys):
    """``cli("train.predict", *args)``: the tool's ``main`` run in this process as
    ``python -m`` runs it; returns its exit code, stdout and stderr like a finished process."""
    def call(tool, *args):
        main = importlib.import_module(tool).main
        capsys.readouterr()  # what came before is not this tool's output
        with fresh_process_logging(), pytest.raises(SystemExit) as exit:
            run_cli(lambda: main([str(a) for a in args]))
        out, err = capsys.readouterr()
        code = exit.value.code
        return SimpleNamespace(returncode=0 if code is None else code, stdout=out, stderr=err)
    return call


def assert_one_error_line(done, message):
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr


@pytest.fixture(scope="module")
def galaxy_folder(tmp_path_factory):
    return make_galaxy_folder(tmp_path_factory.mktemp("galaxies"))


TINY_RUN = ["--epochs", "2", "--batch-size", "8", "--image-size", "32", "--workers", "0",
            "--head", "tree", "--augment", "full", "--schedule", "onecycle", "--crop-fraction",
            "0.7"]


@pytest.fixture(scope="module")
def trained(galaxy_folder, tmp_path_factory):
    """One tiny training run shared by the tests of this module, in this process (train.train
    runs in its own processes under train.sweep and make model)."""
    out = tmp_path_factory.mktemp("run")
    with fresh_process_logging(), pytest.raises(SystemExit) as exit:
        run_cli(lambda: importlib.import_module("train.train").main(
            ["--images", galaxy_folder["images"], "--labels", galaxy_folder["labels"], "--out",
             str(out), *TINY_RUN]))
    assert exit.value.code == 0
    return out


def test_train_writes_checkpoints_history_and_curves(trained):
    for name in ("best.pt", "last.pt", "history.json", "curves.png"):
        assert (trained / name).is_file(), name
    assert len(json.load(open(trained / "history.json"))) == 2
    assert Image.open(trained / "curves.png").size[0] > 200


@e2e
def test_predict_evaluate_gradcam_end_to_end(trained, galaxy_folder, tmp_path):
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

    png = tmp_path / "cam.png"
    done = run("train.gradcam", "--checkpoint", ckpt, "--image", "100003", "--images",
               galaxy_folder["images"], "--answer", "Class1.2", "--method", "gradcam++",
               "--side-by-side", "--out", str(png))
    assert done.returncode == 0, done.stderr
    width, height = Image.open(png).size
    assert width == 3 * height


def test_evaluate_val_split_and_gradcam_options(cli, trained, galaxy_folder, tmp_path):
    ckpt = str(trained / "best.pt")
    report = tmp_path / "report.json"
    done = cli("train.evaluate", "--checkpoint", ckpt, "--images", galaxy_folder["images"],
               "--labels", galaxy_folder["labels"], "--split", "val", "--json", report,
               "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert json.load(open(report))["model"]["galaxies"] == 3  # 20% of 16, as trained
    assert "training galaxies' mean" in done.stdout

    png = tmp_path / "cam.png"
    done = cli("train.gradcam", "--checkpoint", ckpt, "--image", "100003", "--images",
               galaxy_folder["images"], "--method", "layercam", "--layer", "layer3", "--tta",
               "--out", png)
    assert done.returncode == 0, done.stderr
    width, height = Image.open(png).size
    assert "layercam for" in done.stderr and width == height


def test_gradcam_frames_one_image_as_predictions_do(cli, trained, tmp_path):
    """A wide field is zoomed in on before it is explained (the default, as train.predict and
    the app do); --no-frame explains the image as it is."""
    from tests.test_framing import kaggle_like
    wide = tmp_path / "wide.png"
    kaggle_like(0.0774 / 2.5).save(wide)
    pictures = {}
    for switch in ("--frame", "--no-frame"):
        out = tmp_path / f"cam{switch}.png"
        done = cli("train.gradcam", "--checkpoint", trained / "best.pt", "--image", wide,
                   "--side-by-side", switch, "--out", out)
        assert done.returncode == 0, done.stderr
        pictures[switch] = np.asarray(Image.open(out).convert("L"), np.float32)
    side = pictures["--frame"].shape[0]
    seen = {switch: picture[:, :side] for switch, picture in pictures.items()}  # the model's view
    # zoomed in, the galaxy fills far more of the view than in the unframed wide field
    bright = {switch: (view > view.min() + 0.5 * (view.max() - view.min())).mean()
              for switch, view in seen.items()}
    assert bright["--frame"] > 3 * bright["--no-frame"], bright
    # and the map is of that view, not of the image as it is
    heat = {switch: picture[:, side:2 * side] for switch, picture in pictures.items()}
    assert np.abs(heat["--frame"] - heat["--no-frame"]).mean() > 5


def test_tta_json_scores_one_view_and_eight_views_from_one_pass(cli, trained, galaxy_folder,
                                                                tmp_path):
    common = ["--checkpoint", trained / "best.pt", "--images", galaxy_folder["images"],
              "--labels", galaxy_folder["labels"], "--split", "val", "--workers", "0"]
    assert cli("train.evaluate", *common, "--json", tmp_path / "one.json").returncode == 0
    assert cli("train.evaluate", *common, "--tta", "--json", tmp_path / "eight.json").returncode == 0
    done = cli("train.evaluate", *common, "--json", tmp_path / "both1.json", "--tta-json",
               tmp_path / "both8.json")
    assert done.returncode == 0, done.stderr
    assert "without test-time averaging" in done.stdout and "with test-time" in done.stdout
    for alone, together in (("one", "both1"), ("eight", "both8")):
        a = json.load(open(tmp_path / f"{alone}.json"))["model"]
        b = json.load(open(tmp_path / f"{together}.json"))["model"]
        assert (b["tta"], b["tta_views"]) == (a["tta"], a["tta_views"])
        assert b["rmse"] == pytest.approx(a["rmse"], abs=1e-6)
        for column, value in a["per_answer"].items():
            assert b["per_answer"][column] == pytest.approx(value, abs=1e-6)
    one = json.load(open(tmp_path / "one.json"))["model"]["rmse"]
    assert abs(json.load(open(tmp_path / "eight.json"))["model"]["rmse"] - one) > 1e-6
    assert_one_error_line(cli("train.evaluate", *common, "--tta", "--tta-json",
                              tmp_path / "x.json"), "--tta-json already scores")


def test_evaluate_refuses_labels_that_do_not_reproduce_the_split(cli, trained, galaxy_folder,
                                                                  tmp_path):
    """--split val recreates the held-out galaxies from the labels file; if that file has
    changed (a row dropped here), they are other galaxies, and scoring them is refused."""
    labels = pd.read_csv(galaxy_folder["labels"])
    changed = tmp_path / "changed.csv"
    labels.drop(index=5).to_csv(changed, index=False)
    done = cli("train.evaluate", "--checkpoint", trained / "best.pt", "--images",
               galaxy_folder["images"], "--labels", changed, "--split", "val", "--workers", "0")
    assert_one_error_line(done, "does not reproduce the checkpoint's validation split")


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
def test_errors_are_one_clear_line(cli, trained, args, message):
    args = [a.replace("{ckpt}", str(trained / "best.pt")) for a in args]
    assert_one_error_line(cli(*args), message)


@e2e
def test_an_error_is_one_clear_line_from_a_real_process():
    done = run("train.predict", "--checkpoint", "/nonexistent.pt", "--images", ".", "--out",
               "x.csv")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: ") and "checkpoint not found" in done.stderr


def test_every_tool_runs_main_through_run_cli():
    """What the in-process tests rely on: ``python -m train.<tool>`` is ``run_cli(main)``."""
    for tool in TOOLS:
        tree = ast.parse(open(os.path.join(ROOT, *tool.split(".")) + ".py").read())
        guard = [node for node in tree.body if isinstance(node, ast.If)
                 and ast.unparse(node.test) == "__name__ == '__main__'"]
        assert len(guard) == 1 and [ast.unparse(s) for s in guard[0].body] == ["run_cli(main)"], \
            tool


@pytest.mark.parametrize("tool", TOOLS)
def test_help(cli, tool):
    done = cli(tool, "--help")
    assert done.returncode == 0 and "usage" in done.stdout


def test_export_half_precision_and_model_card(cli, trained, galaxy_folder, tmp_path):
    import torch
    exported = tmp_path / "shipped.pt"
    done = cli("train.export", "--checkpoint", trained / "best.pt", "--out", exported,
               "--half", "--check-images", galaxy_folder["images"])
    assert done.returncode == 0, done.stderr
    assert "largest prediction change" in done.stderr
    raw = torch.load(exported, weights_only=True)
    assert "optimizer_state" not in raw
    state = raw["state_dict"]
    assert state["backbone.layer4.1.conv2.weight"].dtype == torch.float16
    assert state["backbone.fc.3.weight"].dtype == torch.float32  # the head stays exact

    # an export whose predictions move too far is refused and leaves the old file as it was
    before = exported.read_bytes()
    done = cli("train.export", "--checkpoint", trained / "best.pt", "--out", exported,
               "--half", "--tolerance", "0", "--check-images", galaxy_folder["images"])
    assert done.returncode != 0 and "export changes predictions by" in done.stderr
    assert exported.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shipped.pt"]
    assert raw["exported_from"] == trained.name
    # exported again (in place, as when newer held-out scores are attached): the same weights,
    # and still named after the run it came from
    done = cli("train.export", "--checkpoint", exported, "--out", exported, "--half",
               "--check-images", galaxy_folder["images"])
    assert done.returncode == 0, done.stderr
    again = torch.load(exported, weights_only=True)
    assert again["exported_from"] == trained.name
    assert all(torch.equal(again["state_dict"][k], v) for k, v in state.items())

    report = tmp_path / "eval.json"
    done = cli("train.evaluate", "--checkpoint", exported, "--images", galaxy_folder["images"],
               "--labels", galaxy_folder["labels"], "--split", "val", "--json", report,
               "--workers", "0")
    assert done.returncode == 0, done.stderr
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps([{"name": "tiny", "epochs": 2, "best_val_rmse": 0.2,
                                     "minutes": 0.1}]))
    card = tmp_path / "card.md"
    done = cli("train.model_card", "--checkpoint", exported, "--evaluation", report,
               "--variants", variants, "--out", card)
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    rmse = json.load(open(report))["model"]["rmse"]
    assert f"{rmse:.4f}" in text and "| tiny | 2 |" in text
    assert "ResNet18 from scratch (no ImageNet weights)" in text
    assert "**tree** output head (per-question softmax" in text
    assert "augmentation 'full' (any rotation, flips" in text


@e2e
def test_export_and_model_card_end_to_end(trained, galaxy_folder, tmp_path):
    exported = tmp_path / "shipped.pt"
    done = run("train.export", "--checkpoint", str(trained / "last.pt"), "--out", str(exported),
               "--half", "--check-images", galaxy_folder["images"])
    assert done.returncode == 0, done.stderr
    assert "largest prediction change" in done.stderr and exported.is_file()
    card = tmp_path / "card.md"
    done = run("train.model_card", "--checkpoint", paths.DEFAULT_MODEL, "--out", str(card))
    assert done.returncode == 0, done.stderr
    assert "Accuracy on held-out galaxies" in card.read_text()


def test_all_data_model_ships_with_its_recipes_heldout_validation(cli, trained, galaxy_folder,
                                                                   tmp_path):
    """--val-fraction 0 leaves no galaxies to test on; export attaches the held-out scores of
    the same recipe on a split (the `trained` run's final epoch), and the card and app report
    those."""
    all_data = tmp_path / "all"
    done = cli("train.train", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", all_data, *TINY_RUN, "--val-fraction", "0")
    assert done.returncode == 0, done.stderr
    reports = {}
    for tag, extra in (("plain", []), ("tta", ["--tta"])):
        reports[tag] = tmp_path / f"split_{tag}.json"
        done = cli("train.evaluate", "--checkpoint", trained / "last.pt", "--images",
                   galaxy_folder["images"], "--labels", galaxy_folder["labels"], "--split",
                   "val", "--json", reports[tag], "--workers", "0", *extra)
        assert done.returncode == 0, done.stderr
    shipped = tmp_path / "shipped.pt"
    export = ["train.export", "--checkpoint", str(all_data / "last.pt"), "--out", str(shipped),
              "--check-images", galaxy_folder["images"]]
    done = cli(*export, "--heldout", reports["plain"], "--heldout-tta", reports["tta"])
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
    done = cli("train.model_card", "--checkpoint", shipped, "--out", card)
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
    done = cli("train.model_card", "--checkpoint", all_data / "last.pt", "--out", card)
    assert_one_error_line(done, "no validation of its own recipe")

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
        done = cli(*export, *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_fine_tune_ships_with_the_validation_and_intervals_of_the_model_it_started_from(
        cli, trained, galaxy_folder, tmp_path):
    """A model fine-tuned from an all-data run, where the fine-tune was not itself run on the
    splits (train.export --heldout-stage 1), carries the held-out scores of the model it started
    from and says so everywhere they are shown; --intervals-from copies that model's intervals,
    marked as calibrated for it. Anything else is refused."""
    import torch
    from galaxy_core.checkpoint import load_checkpoint
    from galaxy_core.registry import describe_model
    from galaxy_core.uncertainty import Calibration
    images, labels = galaxy_folder["images"], galaxy_folder["labels"]
    report = tmp_path / "split.json"
    done = cli("train.evaluate", "--checkpoint", trained / "last.pt", "--images", images,
               "--labels", labels, "--split", "val", "--json", report, "--workers", "0")
    assert done.returncode == 0, done.stderr
    all_data, tuned = tmp_path / "all", tmp_path / "tuned"
    done = cli("train.train", "--images", images, "--labels", labels, "--out", all_data,
               *TINY_RUN, "--val-fraction", "0")
    assert done.returncode == 0, done.stderr
    stage1 = tmp_path / "stage1.pt"
    done = cli("train.export", "--checkpoint", all_data / "last.pt", "--out", stage1,
               "--check-images", images, "--heldout", report)
    assert done.returncode == 0, done.stderr
    raw = torch.load(stage1, weights_only=True)
    raw["intervals"] = Calibration(0.8, {"Class1.1": 1.5}, source="split 0's galaxies").to_dict()
    torch.save(raw, stage1)
    done = cli("train.train", "--images", images, "--labels", labels, "--out", tuned, *TINY_RUN,
               "--val-fraction", "0", "--init-from", stage1, "--augment", "reframe",
               "--epochs", "1", "--lr", "3e-4")
    assert done.returncode == 0, done.stderr
    shipped = tmp_path / "shipped.pt"
    export = ["train.export", "--checkpoint", tuned / "last.pt", "--out", shipped,
              "--check-images", images, "--heldout", report]
    elsewhere = dict(raw, created="2020-01-01T00:00:00+00:00")  # not one of its stages
    torch.save(elsewhere, tmp_path / "elsewhere.pt")
    for args, message in (
            ([], "another recipe (differs in augment, epochs, init_from, lr)"),
            (["--heldout-stage", "3"], "--heldout-stage 3: this checkpoint was trained in 2 "
                                       "stages"),
            (["--heldout-stage", "1", "--intervals-from", trained / "last.pt"],
             "carries no calibrated intervals"),
            (["--heldout-stage", "1", "--intervals-from", tmp_path / "elsewhere.pt"],
             "is not one of the stages this checkpoint was fine-tuned from")):
        done = cli(*export, *args)
        assert_one_error_line(done, message)
        assert not shipped.exists()
    done = cli(*export, "--heldout-stage", "1", "--intervals-from", stage1)
    assert done.returncode == 0, done.stderr

    loaded = load_checkpoint(str(shipped))
    info = describe_model(loaded)
    rmse = json.load(open(report))["model"]["rmse"]
    assert info["heldout"]["model"]["rmse"] == pytest.approx(rmse)
    assert info["heldout_before_fine_tune"]
    from galaxy_core.registry import heldout_score
    assert heldout_score(loaded).what == "its recipe before its fine-tune on 1 held-out splits, " \
        "one view"
    assert info["accuracy"].startswith("held-out RMSE of the model before its fine-tune **")
    assert info["accuracy"].endswith("; the fine-tune was not itself run on them)")
    assert loaded.calibration.quantiles == {"Class1.1": 1.5} and loaded.calibration.stage == 1
    assert loaded.calibration.source == ("split 0's galaxies; calibrated for training stage 1 "
                                         "of 2 (the model before its fine-tune) and carried "
                                         "over unchanged")
    card = tmp_path / "card.md"
    done = cli("train.model_card", "--checkpoint", shipped, "--out", card)
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    assert "Trained in 2 stages" in text and f"{rmse:.4f}" in text
    assert "These are the scores of the model before its last training stage (Recipe)" in text
    assert "carried over unchanged" in text
    # the model it started from, validated as it is, claims its scores as its own
    first = describe_model(load_checkpoint(str(stage1)))
    assert not first["heldout_before_fine_tune"] and first["accuracy"].endswith("held out)")
    done = cli("train.model_card", "--checkpoint", stage1, "--out", card)
    assert done.returncode == 0 and "before its last" not in card.read_text()


def make_variables(galaxy_folder, tmp_path, variants):
    return [f"PY={sys.executable}", f"DATA={galaxy_folder['root']}",
            f"LABELS={galaxy_folder['labels']}", f"MODEL_DIR={tmp_path / 'model'}",
            f"RUNS={tmp_path / 'runs'}", f"CACHE={tmp_path / 'cache'}", f"VARIANTS={variants}",
            "TRAIN_DEVICE=cpu", "EPOCHS=1", "REFRAME_EPOCHS=1",
            "RECIPE=--image-size 32 --crop-fraction 0.7 --head tree --augment full "
            "--batch-size 8 --workers 0"]


@e2e
@pytest.mark.skipif(not HAS_VENV, reason="make model depends on the .venv that `make test` "
                    "installs")
def test_make_reframe_model_runs_the_whole_shipping_pipeline(cli, galaxy_folder, tmp_path):
    """The documented one command (`make reframe-model`, which is `make model`'s runs, then
    each fine-tuned with 'reframe'), on 16 galaxies with a one-epoch recipe: three validation
    runs and the all-data run, their fine-tunes, their scores, the export, the calibration and
    the card; and `make model` publishes the recipe's own runs the same way."""
    model_dir = tmp_path / "model"
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps([{"name": "tiny", "epochs": 1, "best_val_rmse": 0.2}]))
    variables = make_variables(galaxy_folder, tmp_path, variants)
    # HARDWARE named here: make's own probe of it is one more torch import (~5 s of CPU)
    done = subprocess.run(["make", "-s", "reframe-model", *variables,
                           "HARDWARE=the test machine"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = sorted((tmp_path / "runs").glob("*/last.pt"))
    assert len(runs) == 8
    written = [os.path.getmtime(p) for p in runs]
    # run again (as after an interruption): make's own training commands, as `make -n` lists
    # them, leave the finished runs as they are
    listed = subprocess.run(["make", "-s", "-n", "reframe-model", *variables, "HARDWARE=unused"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    commands = [shlex.split(line) for line in listed.stdout.splitlines()
                if " -m train.train " in line]
    assert len(commands) == 8
    said = 0
    for command in commands:
        assert command[:3] == [sys.executable, "-m", "train.train"]
        again = cli("train.train", *command[3:])
        assert again.returncode == 0, again.stderr
        said += again.stderr.count("nothing left to train")
    assert said == 8
    assert [os.path.getmtime(p) for p in runs] == written
    from galaxy_core.checkpoint import load_checkpoint
    shipped = load_checkpoint(str(model_dir / "galaxy_resnet18.pt"))
    assert shipped.meta["data"]["val_galaxies"] == 0
    # the all-data run, fine-tuned with 'reframe'
    assert shipped.meta["train_config"]["augment"] == "reframe"
    assert [s["train_config"]["out"] for s in shipped.meta["earlier_stages"]] == [
        str(tmp_path / "runs" / "shipped")]
    # calibrated on the galaxies the three fine-tuned split runs held out, each counted once
    held_out = set()
    for seed in range(3):
        run = load_checkpoint(str(tmp_path / "runs" / f"reframe_split{seed}" / "last.pt"))
        assert run.meta["earlier_stages"][0]["data"]["split_seed"] == seed
        held_out |= set(galaxy_folder["ids"]) - set(run.meta["data"]["train_ids"])
    assert shipped.calibration.source.startswith(f"{len(held_out)} galaxies held out by")
    assert [s["split_seed"] for s in shipped.meta["recipe_validation"]["splits"]] == [0, 1, 2]
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "Accuracy on held-out galaxies" in card and "| tiny | 1 |" in card
    assert "## Uncertainty: calibrated intervals" in card
    assert "Trained in 2 stages" in card and "augmentation 'reframe'" in card
    assert "on CPU (" in card and "`make reframe-model`" in card
    assert (model_dir / "rmse_per_question.png").is_file()
    # `make model`: the same four recipe runs, published from the recipe's own runs
    recipe = subprocess.run(["make", "-s", "-n", "model", *variables, "HARDWARE=unused"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert [line for line in recipe.stdout.splitlines() if " -m train.train " in line] == [
        line for line in listed.stdout.splitlines() if " -m train.train " in line][:4]
    assert f"--checkpoint {tmp_path / 'runs' / 'shipped' / 'last.pt'} --out" in recipe.stdout
    assert str(tmp_path / "runs" / "reframe_") not in recipe.stdout
    assert "--augment reframe" not in recipe.stdout

    # `make shipped-fine-tune` (what ships now): the recipe republished, its all-data model
    # fine-tuned and shipped with the held-out scores and intervals of the recipe's model
    done = subprocess.run(["make", "-s", "shipped-fine-tune", *variables,
                           "HARDWARE=the test machine"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    recipe_model = load_checkpoint(str(tmp_path / "runs" / "recipe_shipped.pt"))
    assert recipe_model.meta["train_config"]["augment"] == "full"
    tuned = load_checkpoint(str(model_dir / "galaxy_resnet18.pt"))
    assert tuned.meta["train_config"]["augment"] == "reframe"
    assert tuned.meta["earlier_stages"][0]["created"] == recipe_model.meta["created"]
    assert tuned.meta["recipe_validation"]["splits"] == \
        recipe_model.meta["recipe_validation"]["splits"]
    assert (tuned.meta["recipe_validation"]["stage"], tuned.meta["recipe_validation"]["stages"]) \
        == (1, 2)
    assert tuned.calibration.quantiles == recipe_model.calibration.quantiles
    assert tuned.calibration.source.endswith("calibrated for training stage 1 of 2 (the model "
                                             "before its fine-tune) and carried over unchanged")
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "`make shipped-fine-tune`" in card and "Trained in 2 stages" in card
    assert "These are the scores of the model before its last training stage" in card


@e2e
@pytest.mark.skipif(not HAS_VENV, reason="make learning-curve depends on the .venv that "
                    "`make test` installs")
def test_make_learning_curve_trains_nested_shares_and_the_card_shows_them(cli, galaxy_folder,
                                                                          tmp_path):
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
    done = cli("train.model_card", "--checkpoint", paths.DEFAULT_MODEL, "--variants",
               tmp_path / "runs" / "learning_curve" / "variants.json", "--out", card)
    assert done.returncode == 0, done.stderr
    text = card.read_text()
    assert "## Accuracy against the amount of training data" in text
    assert "| 10 |" in text


SWEEP_COMMON = "--image-size 32 --batch-size 8 --workers 0 --device cpu --head tree"


@e2e
def test_sweep_trains_variants_at_once_and_scores_the_split_runs(cli, galaxy_folder, tmp_path):
    # the budget (and the time allowed for the budget plus scoring) leaves room for a busy
    # machine: the probe alone took 140 s at a load of 12 on 2 cores; --max-epochs 2 is what
    # bounds the run on an idle one
    out = tmp_path / "sweep"
    # the sweep runs here; its training runs are processes of their own, as for a user (and
    # `make learning-curve` below runs the sweep itself as a process)
    done = cli("train.sweep", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(out), "--common", SWEEP_COMMON,
               "--variant", "s0=--seed 0", "--variant", "s1=--seed 1 --crop-fraction 0.7",
               "--variant", "all=--val-fraction 0", "--budget-s", "240", "--max-epochs", "2")
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
    done = cli("train.sweep", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(tmp_path / "cut"), "--common", SWEEP_COMMON,
               "--variant", "s0=--seed 0", "--epochs", "100000", "--budget-s", "15",
               "--learning-curve", "a curve")
    assert done.returncode == 1 and "time budget spent" in done.stderr, done.stderr[-3000:]
    [row] = json.load(open(tmp_path / "cut" / "variants.json"))
    assert row["name"] == f"s0 (stopped at epoch {row['epochs']} of 100000)" and row["epochs"] >= 1
    assert 0 < row["best_val_rmse"] < 1 and "learning_curve" not in row


def test_sweep_refuses_bad_variants_before_running_anything(cli, galaxy_folder, tmp_path):
    for variant, message in (("bad=--image-sise 32", "unknown flag"),
                             ("bad=--epochs 3", "set by the sweep"),
                             ("bad=--head round", "invalid choice"),
                             ("no flags", "must look like")):
        done = cli("train.sweep", "--images", galaxy_folder["images"], "--labels",
                   galaxy_folder["labels"], "--out", tmp_path / "x", "--variant", variant,
                   "--epochs", "1")
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert not (tmp_path / "x" / "runs").exists()  # refused before anything ran
    done = cli("train.sweep", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", tmp_path / "x", "--variant", "s0=--seed 0")
    assert done.returncode == 2 and "give --epochs, --budget-s or both" in done.stderr


@e2e
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


@e2e
def test_compare_trains_each_recipe_step_into_one_table(galaxy_folder, tmp_path):
    from train.compare import VARIANTS
    done = run("train.compare", "--images", galaxy_folder["images"], "--labels",
               galaxy_folder["labels"], "--out", str(tmp_path / "compare"), "--epochs", "1",
               "--image-size", "32")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.load(open(tmp_path / "compare" / "variants.json"))
    assert [r["name"] for r in rows] == [name for name, _ in VARIANTS]
    assert all(r["epochs"] == 1 and 0 < r["best_val_rmse"] < 1 for r in rows)
    # each step keeps the changes before it
    assert rows[0]["config"]["head"] == "plain" and rows[-1]["config"]["head"] == "tree"
    assert rows[-1]["config"]["crop_fraction"] == 0.5 and rows[-1]["config"]["augment"] == "full"


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
