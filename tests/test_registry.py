"""The app-wide active model: reviewed before activation, logged, restorable in one step."""

import os

import pytest

from galaxy_core import paths, registry
from galaxy_core.checkpoint import CheckpointError, atomic_save, load_checkpoint, make_checkpoint
from galaxy_core.schema import ANSWER_COLUMNS
from tests.conftest import make_loaded


def scored_checkpoint(path, val_rmse, baseline_rmse=0.18, val_galaxies=800):
    """A small checkpoint whose record says it scored ``val_rmse`` on its validation galaxies
    (None: trained on every galaxy, nothing held out)."""
    model = make_loaded(head="tree", trained=ANSWER_COLUMNS[:17])
    val = {"rmse": val_rmse} if val_rmse is not None else {}
    best = {"epoch": 3, "val": val, "baseline_val": {"rmse": baseline_rmse}}
    data = {"train_galaxies": 3200, "val_galaxies": val_galaxies if val_rmse is not None else 0}
    atomic_save(make_checkpoint(model.net, model.preprocess, model.trained_columns, epoch=3,
                                metrics={"best": best}, history=[], data=data, train_config={}),
                path)
    return str(path)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    monkeypatch.setattr(paths, "RUNS_DIR", str(folder))
    return folder


def test_the_shipped_model_is_active_until_another_is_activated(runs):
    assert registry.active_model_path() == paths.DEFAULT_MODEL
    good = scored_checkpoint(runs / "good" / "best.pt", 0.10)
    registry.set_active_model(good, by="local visitor (127.0.0.1)")
    assert registry.active_model_path() == good
    entry = registry.activation_log()[-1]
    assert (entry["action"], entry["model"], entry["previous"], entry["by"]) == (
        "activate", "good/best.pt", "shipped model", "local visitor (127.0.0.1)")
    assert entry["heldout_rmse"] == 0.10 and entry["time"]


def test_a_model_no_better_than_the_baseline_is_refused_unless_confirmed(runs):
    worse = scored_checkpoint(runs / "stopped" / "best.pt", 0.188, baseline_rmse=0.181)
    with pytest.raises(registry.ActivationRefused, match="no better than predicting the mean"):
        registry.set_active_model(worse, by="someone")
    assert registry.active_model_path() == paths.DEFAULT_MODEL  # nothing written
    assert registry.activation_log() == []
    registry.set_active_model(worse, by="admin password (203.0.113.7)", confirm=True)
    assert registry.active_model_path() == worse
    assert registry.activation_log()[-1]["confirmed_despite"]


def test_a_model_without_any_heldout_score_needs_confirmation(runs):
    unscored = scored_checkpoint(runs / "all" / "best.pt", None)
    review = registry.activation_review(load_checkpoint(unscored),
                                        load_checkpoint(paths.DEFAULT_MODEL))
    assert review.candidate.rmse is None and "no held-out score" in review.problems[0]
    # the shipped model is scored by its recipe's held-out splits
    assert review.current.rmse is not None and review.current.beats_baseline
    with pytest.raises(registry.ActivationRefused):
        registry.set_active_model(unscored)


def test_restoring_the_shipped_model_is_one_step_and_logged(runs):
    good = scored_checkpoint(runs / "good" / "best.pt", 0.10)
    registry.set_active_model(good, by="a")
    registry.restore_shipped(by="b")
    assert registry.active_model_path() == paths.DEFAULT_MODEL
    assert [e["action"] for e in registry.activation_log()] == ["activate", "restore shipped"]
    assert registry.activation_log()[-1]["previous"] == "good/best.pt"


def test_a_broken_file_is_never_activated(runs):
    broken = runs / "bad" / "best.pt"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        registry.set_active_model(str(broken), confirm=True)
    assert not os.path.exists(runs / registry.ACTIVE_FILE)


def test_an_active_file_naming_a_vanished_model_falls_back_to_the_shipped_one(runs):
    good = scored_checkpoint(runs / "good" / "best.pt", 0.10)
    registry.set_active_model(good)
    os.unlink(good)
    assert registry.active_model_path() == paths.DEFAULT_MODEL
