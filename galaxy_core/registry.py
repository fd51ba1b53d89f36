"""Which checkpoints the app can offer, which one is active, and how to describe a model.

The app-wide active model is recorded in ``<runs>/active_model.json``; without it (or when the
file it names is gone) the shipped model is active. Activating a model is checked first
(``activation_review``): a model no better than predicting the mean answer, or one with no
held-out score at all, is refused unless the admin confirms. Every activation and restore is
appended to ``<runs>/activation_log.json`` with who did it and when.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import threading
from dataclasses import dataclass

from . import paths
from .augment import TTA_VIEWS
from .checkpoint import LoadedModel, load_checkpoint
from .evaluate import mean_over_splits, shown_by_default
from .files import write_json
from .schema import QUESTIONS

ACTIVE_FILE = "active_model.json"
LOG_FILE = "activation_log.json"
_log_lock = threading.Lock()


class ActivationRefused(ValueError):
    """Activation stopped by a check the admin may override (``confirm=True``)."""


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


@dataclass(frozen=True)
class Score:
    """A model's held-out RMSE beside the mean-prediction baseline on the same galaxies."""

    rmse: float | None
    baseline: float | None
    what: str  # in words: which galaxies, which predictions

    @property
    def beats_baseline(self) -> bool | None:
        if self.rmse is None or self.baseline is None:
            return None
        return self.rmse < self.baseline


def heldout_score(loaded: LoadedModel) -> Score:
    """The model's own validation score, else its recipe's held-out score (the shipped model's
    case: trained on every galaxy), else nothing."""
    info = describe_model(loaded)
    if info["val_rmse"] is not None:
        return Score(info["val_rmse"], info["baseline_rmse"],
                     f"its own {info['data']}, one view")
    if info["heldout"]:
        shown = shown_by_default(info["heldout"])
        views = f"{TTA_VIEWS} views" if shown is info["heldout"]["model_tta"] else "one view"
        before = " before its fine-tune" if info["heldout_before_fine_tune"] else ""
        return Score(shown["rmse"], info["heldout"]["mean_baseline"]["rmse"],
                     f"its recipe{before} on {info['heldout']['splits']} held-out splits, "
                     f"{views}")
    return Score(None, None, "no held-out galaxies")


@dataclass(frozen=True)
class Review:
    candidate: Score
    current: Score
    problems: tuple[str, ...]  # why activating needs the admin's explicit confirmation


def activation_review(candidate: LoadedModel, current: LoadedModel | None) -> Review:
    """What an admin sees before activating ``candidate`` in place of ``current``."""
    score = heldout_score(candidate)
    problems = []
    if score.rmse is None:
        problems.append("it has no held-out score (no validation galaxies), so nothing shows "
                        "it is any good")
    elif score.beats_baseline is False:
        problems.append(f"its held-out RMSE {score.rmse:.4f} is no better than predicting the "
                        f"mean answer ({score.baseline:.4f})")
    if set(candidate.trained_columns) < set(current.trained_columns if current else ()):
        problems.append("it learned fewer answers than the current model")
    return Review(score, heldout_score(current) if current else Score(None, None, "none"),
                  tuple(problems))


def set_active_model(path: str, runs_dir: str | None = None, *, by: str = "",
                     confirm: bool = False) -> LoadedModel:
    """Check ``path`` and record it as the app's active model (atomically), logging who did it.

    Raises ``CheckpointError`` when it does not load, ``ActivationRefused`` when the review
    finds a problem and ``confirm`` is False; nothing is written then."""
    runs_dir = runs_dir or paths.RUNS_DIR
    loaded = load_checkpoint(path)  # raises CheckpointError before anything is written
    previous = active_model_path(runs_dir)
    try:
        current = load_checkpoint(previous)
    except (OSError, ValueError):
        current = None
    review = activation_review(loaded, current)
    if review.problems and not confirm:
        raise ActivationRefused("not activated: " + "; ".join(review.problems) +
                                ". Confirm explicitly to activate it anyway.")
    write_json(os.path.join(runs_dir, ACTIVE_FILE), {"path": os.path.abspath(path)},
               indent=None)  # creates the folder
    _log(runs_dir, "activate", os.path.abspath(path), previous, by, review)
    return loaded


def restore_shipped(runs_dir: str | None = None, *, by: str = "") -> None:
    """Make the shipped model the app's active model again (one click on the Train page)."""
    runs_dir = runs_dir or paths.RUNS_DIR
    previous = active_model_path(runs_dir)
    target = os.path.join(runs_dir, ACTIVE_FILE)
    if os.path.exists(target):
        os.unlink(target)
    _log(runs_dir, "restore shipped", paths.DEFAULT_MODEL, previous, by, None)


def activation_log(runs_dir: str | None = None) -> list[dict]:
    """Every activation and restore, oldest first ([] when there is none or it is unreadable)."""
    try:
        with open(os.path.join(runs_dir or paths.RUNS_DIR, LOG_FILE)) as handle:
            entries = json.load(handle)
        return entries if isinstance(entries, list) else []
    except (OSError, ValueError):
        return []


def _log(runs_dir, action, path, previous, by, review: Review | None) -> None:
    entry = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "action": action, "model": model_label(path), "path": path,
             "previous": model_label(previous), "by": by or "unknown"}
    if review is not None:
        entry.update(heldout_rmse=review.candidate.rmse, baseline_rmse=review.candidate.baseline,
                     confirmed_despite=list(review.problems))
    with _log_lock:
        write_json(os.path.join(runs_dir, LOG_FILE), activation_log(runs_dir) + [entry])


def training_galaxies(loaded: LoadedModel) -> frozenset[int] | None:
    """The GalaxyIDs the model was trained on, where its checkpoint records them (None when it
    does not: then any galaxy may have been one)."""
    ids = (loaded.meta.get("data") or {}).get("train_ids")
    return None if ids is None else frozenset(int(g) for g in ids)


def model_label(path: str) -> str:
    if os.path.abspath(path) == os.path.abspath(paths.DEFAULT_MODEL):
        return "shipped model"
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}"


def stages_not_validated(meta: dict) -> int:
    """How many of a model's last training stages its held-out scores (``recipe_validation``)
    leave out: 0 when they are of its own recipe, 1 for a fine-tune exported with the
    validation of the model it started from (``train.export --heldout-stage``)."""
    record = meta.get("recipe_validation") or {}
    stages = int(record.get("stages") or 0)
    return max(0, stages - int(record.get("stage") or stages))


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
    # its held-out scores are of the model it was fine-tuned from (train.export --heldout-stage)
    before = bool(heldout) and stages_not_validated(meta) > 0
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
        accuracy = (f"held-out RMSE {'of the model before its fine-tune ' if before else ''}"
                    f"**{heldout['model']['rmse']:.4f}** one view{views} (its recipe trained on "
                    f"{len(splits)} other splits, each scored on the galaxies it held out"
                    f"{'; the fine-tune was not itself run on them' if before else ''})")
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
        "heldout_before_fine_tune": before,
        "accuracy": accuracy,
        "learned_questions": [f"Q{q.number} {q.topic}" for q in learned],
        "not_learned_questions": [f"Q{q.number} {q.topic}" for q in QUESTIONS if q not in learned],
        "head": loaded.net.config.head,
        "image_size": loaded.preprocess.image_size,
        "crop_fraction": loaded.preprocess.crop_fraction,
    }
