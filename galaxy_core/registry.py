"""Which checkpoints the app can offer, which one is active, and how to describe a model."""

from __future__ import annotations

import glob
import json
import os

from . import paths
from .augment import TTA_VIEWS
from .checkpoint import LoadedModel, load_checkpoint
from .evaluate import mean_over_splits
from .files import write_json
from .schema import QUESTIONS

ACTIVE_FILE = "active_model.json"


def available_checkpoints(runs_dir: str | None = None) -> list[str]:
    """The shipped model (if present) and every best.pt under the runs folder, newest first."""
    runs_dir = runs_dir or paths.RUNS_DIR
    found = sorted(glob.glob(os.path.join(runs_dir, "**", "best.pt"), recursive=True),
                   key=os.path.getmtime, reverse=True)
    shipped = [paths.DEFAULT_MODEL] if os.path.isfile(paths.DEFAULT_MODEL) else []
    return shipped + [os.path.abspath(p) for p in found]


def active_model_path(runs_dir: str | None = None) -> str:
    """The model a maintainer made active, else the shipped default."""
    runs_dir = runs_dir or paths.RUNS_DIR
    try:
        with open(os.path.join(runs_dir, ACTIVE_FILE)) as handle:
            path = json.load(handle)["path"]
        if os.path.isfile(path):
            return path
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return paths.DEFAULT_MODEL


def set_active_model(path: str, runs_dir: str | None = None) -> LoadedModel:
    """Check that ``path`` loads, then record it as the app's active model (atomically)."""
    loaded = load_checkpoint(path)  # raises CheckpointError before anything is written
    target = os.path.join(runs_dir or paths.RUNS_DIR, ACTIVE_FILE)
    write_json(target, {"path": os.path.abspath(path)}, indent=None)  # creates the folder
    return loaded


def model_label(path: str) -> str:
    if os.path.abspath(path) == os.path.abspath(paths.DEFAULT_MODEL):
        return "shipped model"
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}"


def describe_model(loaded: LoadedModel) -> dict:
    """What the sidebar and model card show: when, on what, how well, which answers.

    ``val_rmse`` is the model's own validation score; a model trained on every galaxy has none,
    and ``heldout`` then holds its recipe's scores on other splits (``meta["recipe_validation"]``,
    averaged), if it carries them. ``accuracy`` says in words which of the two it is;
    ``trained_on_all``: no labelled galaxy was held out."""
    meta = loaded.meta
    best = (meta.get("metrics") or {}).get("best") or {}
    val = best.get("val") or {}
    data = meta.get("data") or {}
    splits = (meta.get("recipe_validation") or {}).get("splits") or []
    heldout = mean_over_splits(splits) if splits else None
    learned = [q for q in QUESTIONS if all(c in loaded.trained_columns for c in q.columns)]
    trained_on_all = data.get("val_galaxies") == 0
    if not data:
        described = meta.get("note", "unknown")
    elif trained_on_all:
        described = f"all {data.get('train_galaxies', '?')} labelled galaxies (none held out)"
    else:
        described = (f"{data.get('train_galaxies', '?')} training / "
                     f"{data.get('val_galaxies', '?')} validation galaxies")
    if val.get("rmse") is not None:
        accuracy = f"validation RMSE **{val['rmse']:.4f}**"
    elif heldout:
        tta = heldout["model_tta"]["rmse"]
        views = f", **{tta:.4f}** averaged over {TTA_VIEWS} views" if tta is not None else ""
        accuracy = (f"held-out RMSE **{heldout['model']['rmse']:.4f}** one view{views} (its "
                    f"recipe trained on {len(splits)} other splits, each scored on the galaxies "
                    f"it held out)")
    else:
        accuracy = "no held-out accuracy (no validation galaxies)"
    return {
        "created": meta.get("created", "unknown"),
        "epoch": meta.get("epoch"),
        "data": described,
        "trained_on_all": trained_on_all,
        "val_rmse": val.get("rmse"),
        "baseline_rmse": (best.get("baseline_val") or {}).get("rmse"),
        "heldout": heldout,
        "accuracy": accuracy,
        "learned_questions": [f"Q{q.number} {q.topic}" for q in learned],
        "not_learned_questions": [f"Q{q.number} {q.topic}" for q in QUESTIONS if q not in learned],
        "head": loaded.net.config.head,
        "image_size": loaded.preprocess.image_size,
        "crop_fraction": loaded.preprocess.crop_fraction,
    }
