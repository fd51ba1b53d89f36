"""Inputs that must fail early and clearly, in process: the command-line tools' outputs checked
before any model is loaded or image decoded, a prediction run that read nothing leaving an
earlier file alone, degenerate labels refused with one line, and the validation split check."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from galaxy_core.checkpoint import atomic_save, make_checkpoint
from galaxy_core.data import read_labels, split_train_val
from galaxy_core.evaluate import report_table
from galaxy_core.metrics import score
from galaxy_core.schema import ANSWER_COLUMNS, answer_name
from galaxy_core.training import ids_digest
from tests.conftest import make_loaded
from train import evaluate as evaluate_cli
from train import gradcam as gradcam_cli
from train import predict as predict_cli
from train import train as train_cli
from train.common import run_cli

# loading this fails, so an error about anything else shows the tool stopped before loading
MISSING_CHECKPOINT = "/nonexistent/model.pt"


def run(main, argv, capsys, stdout=False):
    """Exit code and stderr (and stdout) of ``main(argv)`` run as the command line runs it."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main(argv))
    captured = capsys.readouterr()
    if stdout:
        return exit_info.value.code, captured.out, captured.err
    return exit_info.value.code, captured.err


def assert_one_error(code, err, message):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], err


@pytest.mark.parametrize("out, message", [
    ("", "--out must name a file, got ''"),
    ("{tmp}", "is a folder"),
    ("{tmp}/no/such/folder/p.csv", "does not exist"),
    ("{file}/p.csv", "does not exist"),  # a file where the folder should be
])
def test_predict_output_is_checked_before_the_model_is_loaded(tmp_path, capsys, out, message):
    (tmp_path / "a_file").write_text("x")
    out = out.replace("{tmp}", str(tmp_path)).replace("{file}", str(tmp_path / "a_file"))
    code, err = run(predict_cli.main, ["--checkpoint", MISSING_CHECKPOINT, "--images",
                                       str(tmp_path), "--out", out], capsys)
    assert_one_error(code, err, message)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_predict_output_in_a_read_only_folder_is_refused(tmp_path, capsys):
    # /proc refuses new files even to root, whom permission bits do not stop: the check writes
    code, err = run(predict_cli.main, ["--checkpoint", MISSING_CHECKPOINT, "--images",
                                       str(tmp_path), "--out", "/proc/p.csv"], capsys)
    assert_one_error(code, err, "is not writable")
    assert not list(tmp_path.iterdir())  # nothing was predicted, nothing left behind


def test_predict_that_reads_no_image_leaves_the_earlier_file_alone(tmp_path, capsys,
                                                                  checkpoint_file):
    images = tmp_path / "images"
    images.mkdir()
    (images / "1.jpg").write_bytes(b"not a picture")
    (images / "2.png").write_bytes(b"")
    results = tmp_path / "results"
    results.mkdir()
    out = results / "predictions.csv"
    out.write_text("GalaxyID,Class1.1\n7,0.5\n")
    code, err = run(predict_cli.main, ["--checkpoint", checkpoint_file, "--images", str(images),
                                       "--out", str(out), "--no-tta"], capsys)
    assert code == 2
    assert "skipped 2 unreadable file(s)" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: none of the 2 image(s) could be read")
    assert "left as it was" in last
    assert out.read_text() == "GalaxyID,Class1.1\n7,0.5\n"
    assert os.listdir(results) == ["predictions.csv"]  # and no temporary file beside it


@pytest.mark.parametrize("flag, value, message", [
    ("--json", "", "--json must name a file"),
    ("--json", "{tmp}", "is a folder"),
    ("--json", "{tmp}/missing/r.json", "does not exist"),
    ("--plots", "", "--plots must name a folder"),
    ("--plots", "{file}", "is a file, not a folder"),
    ("--plots", "{tmp}/missing/plots", "does not exist"),
])
def test_evaluate_outputs_are_checked_before_the_model_is_loaded(galaxy_folder, capsys, flag,
                                                                 value, message):
    tmp = galaxy_folder["root"]
    value = value.replace("{tmp}", str(tmp)).replace("{file}", galaxy_folder["labels"])
    code, err = run(evaluate_cli.main, ["--checkpoint", MISSING_CHECKPOINT, "--images",
                                        galaxy_folder["images"], "--labels",
                                        galaxy_folder["labels"], flag, value], capsys)
    assert_one_error(code, err, message)


@pytest.mark.parametrize("out, message", [
    ("", "--out must name a file"),
    ("{tmp}", "is a folder"),
    ("{tmp}/cam", "must end in one of .png, .jpg"),
    ("{tmp}/missing/cam.png", "does not exist"),
])
def test_gradcam_output_is_checked_before_the_model_is_loaded(galaxy_folder, capsys, out,
                                                              message):
    out = out.replace("{tmp}", str(galaxy_folder["root"]))
    code, err = run(gradcam_cli.main, ["--checkpoint", MISSING_CHECKPOINT, "--image", "100001",
                                       "--images", galaxy_folder["images"], "--out", out], capsys)
    assert_one_error(code, err, message)


def labels_csv(path, galaxy_ids, columns):
    """A labels CSV of ``galaxy_ids`` with ``columns`` {name: values or None for empty}."""
    frame = pd.DataFrame({"GalaxyID": galaxy_ids})
    for name, values in columns.items():
        frame[name] = values if values is not None else np.nan
    frame.to_csv(path, index=False)
    return str(path)


def test_evaluate_refuses_degenerate_labels_before_the_model_is_loaded(galaxy_folder, capsys):
    root, ids = galaxy_folder["root"], galaxy_folder["ids"]
    header_only = labels_csv(root / "header.csv", [], {"Class1.1": []})
    all_empty = labels_csv(root / "empty.csv", ids, {"Class1.1": None, "Class1.2": None})
    for labels, message in [(header_only, "no galaxies"),
                            (all_empty, "every cell of its 2 answer column(s) is empty")]:
        code, err = run(evaluate_cli.main, ["--checkpoint", MISSING_CHECKPOINT, "--images",
                                            galaxy_folder["images"], "--labels", labels], capsys)
        assert_one_error(code, err, message)


def test_evaluate_with_an_empty_answer_column_leaves_it_out(galaxy_folder, checkpoint_file,
                                                            capsys, caplog, tmp_path):
    targets = galaxy_folder["targets"]
    labels = labels_csv(tmp_path / "partial.csv", galaxy_folder["ids"], {
        "Class1.1": targets[:, 0], "Class1.2": targets[:, 1], "Class1.3": None})
    report = tmp_path / "report.json"
    code, out, err = run(evaluate_cli.main, ["--checkpoint", checkpoint_file, "--images",
                                             galaxy_folder["images"], "--labels", labels,
                                             "--json", str(report)], capsys, stdout=True)
    assert code == 0, err
    assert "left out: Class1.3" in caplog.text
    written = json.loads(report.read_text())
    assert written["model"]["evaluated_columns"] == ["Class1.1", "Class1.2"]
    assert written["model"]["per_answer"]["Class1.3"] is None
    shown = next(line for line in out.splitlines() if answer_name("Class1.3") in line)
    assert shown.split()[-1] == "-"


def test_report_table_shows_a_dash_where_nothing_is_known():
    targets = np.full((3, len(ANSWER_COLUMNS)), np.nan)
    targets[:, 0] = [0.2, 0.4, 0.6]  # Class1.1 known; Class1.2 and Class1.3 not
    report = score(np.full_like(targets, 0.5), targets)
    report["evaluated_columns"] = ["Class1.1"]
    lines = report_table(report, report).splitlines()
    known = next(line for line in lines if answer_name("Class1.1") in line)
    unknown = next(line for line in lines if answer_name("Class1.2") in line)
    assert known.split()[-2:] == ["0.1915", "0.1915"]
    assert unknown.split()[-1] == "-"


def test_train_refuses_labels_without_a_known_answer_before_any_work(galaxy_folder, capsys,
                                                                    tmp_path):
    labels = labels_csv(tmp_path / "empty.csv", galaxy_folder["ids"], {"Class1.1": None})
    out = tmp_path / "run"
    code, err = run(train_cli.main, ["--images", galaxy_folder["images"], "--labels", labels,
                                     "--out", str(out), "--epochs", "1"], capsys)
    assert_one_error(code, err, "every cell of its 1 answer column(s) is empty")
    assert not out.exists()


def split_checkpoint(path, val_ids):
    """A checkpoint that records it was validated on ``val_ids`` (seed 0, a quarter held out)."""
    model = make_loaded(head="tree", trained=ANSWER_COLUMNS)
    atomic_save(make_checkpoint(model.net, model.preprocess, model.trained_columns, epoch=1,
                                metrics={"best": {}}, history=[],
                                data={"val_ids_sha": ids_digest(val_ids)},
                                train_config={"seed": 0, "val_fraction": 0.25}), path)
    return str(path)


def test_evaluate_val_split_is_refused_when_the_labels_split_otherwise(galaxy_folder, capsys,
                                                                       tmp_path):
    _, val = split_train_val(read_labels(galaxy_folder["labels"]), 0.25, 0)
    argv = ["--images", galaxy_folder["images"], "--labels", galaxy_folder["labels"],
            "--split", "val"]
    other = split_checkpoint(tmp_path / "other.pt", val.galaxy_ids[1:])
    code, err = run(evaluate_cli.main, ["--checkpoint", other] + argv, capsys)
    assert_one_error(code, err, "does not reproduce the checkpoint's validation split")
    same = split_checkpoint(tmp_path / "same.pt", val.galaxy_ids)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: evaluate_cli.main(["--checkpoint", same] + argv))
    assert exit_info.value.code == 0
    assert f"val split: {len(val)} galaxies" in capsys.readouterr().out
