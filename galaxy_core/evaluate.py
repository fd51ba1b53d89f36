"""Evaluation of a model on a labelled set: Kaggle RMSE overall, per question, per answer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import augment
from .checkpoint import LoadedModel
from .config import TrainConfig, field_defaults
from .data import (DataError, LabelTable, check_images_exist, image_path, read_labels,
                   select_subset, split_train_val)
from .metrics import score
from .predict import predict_files
from .schema import ANSWER_COLUMNS, QUESTIONS, answer_name
from .training import column_means, ids_digest


@dataclass
class Evaluation:
    report: dict  # rmse_report of the model
    preds: np.ndarray  # (N, 37)
    targets: np.ndarray  # (N, 37), NaN where unknown
    galaxy_ids: np.ndarray
    one_view: "Evaluation | None" = None  # the same galaxies scored on one view (see evaluate)


def training_split(loaded: LoadedModel, labels_csv, table: LabelTable | None = None):
    """Recreate the (train, validation) tables the checkpoint was trained with from
    ``labels_csv`` (or ``table``, already read from it), and check that the validation
    GalaxyIDs are exactly those it recorded."""
    config = loaded.meta.get("train_config") or {}
    data = loaded.meta.get("data") or {}
    if not config or "val_ids_sha" not in data:
        raise DataError("this checkpoint does not record its training split")
    table = select_subset(table if table is not None else read_labels(labels_csv),
                          config.get("subset", 0),
                          config.get("subset_mode", "first"), config.get("seed", 0))
    train, val = split_train_val(table, config.get("val_fraction", 0.2), config.get("seed", 0),
                                 config.get("train_fraction", 1.0))
    if ids_digest(val.galaxy_ids) != data["val_ids_sha"]:
        raise DataError(f"{labels_csv} does not reproduce the checkpoint's validation split "
                        f"(different labels file or rows)")
    return train, val


def evaluate(loaded: LoadedModel, images_dir, labels_csv, tta: bool = False,
             batch_size: int = 64, workers: int = 2, on_progress=None,
             table: LabelTable | None = None, one_view_too: bool = False) -> Evaluation:
    """Predict every labelled galaxy (or those of ``table``) and report RMSE. With ``tta``
    and ``one_view_too``, ``one_view`` also holds the evaluation of the image as it is (the
    first of the 8 views), from the same forward passes."""
    table = table if table is not None else read_labels(labels_csv)
    check_images_exist(images_dir, table.galaxy_ids)
    result = predict_files(loaded, [image_path(images_dir, g) for g in table.galaxy_ids],
                           batch_size=batch_size, tta=tta, workers=workers,
                           on_progress=on_progress, keep_views=one_view_too)
    if result.errors:
        raise DataError(f"{len(result.errors)} images could not be read, e.g. {result.errors[0][1]}")
    preds = result.frame[list(ANSWER_COLUMNS)].to_numpy(dtype=np.float64)
    evaluation = _scored(loaded, table, preds, tta)
    if one_view_too:
        evaluation.one_view = _scored(loaded, table, result.views[:, 0].astype(np.float64),
                                      False)
    return evaluation


def _scored(loaded: LoadedModel, table: LabelTable, preds: np.ndarray, tta: bool) -> Evaluation:
    untrained = [c for c in table.columns if c not in loaded.trained_columns]
    report = score(preds, table.targets, untrained)
    report["tta"] = tta
    report["tta_views"] = augment.TTA_VIEWS if tta else 1
    report["evaluated_columns"] = list(table.columns)
    report["untrained_columns_with_targets"] = untrained
    return Evaluation(report, preds, table.targets, table.galaxy_ids)


def report_table(report: dict, baseline: dict | None = None) -> str:
    """A plain-text table: overall, per question, per answer (only where targets exist)."""
    lines = [f"{'':38s} {'RMSE':>8s}" + (f" {'mean-baseline':>14s}" if baseline else "")]

    def row(name, value, base):  # a value is None where no cell is known: shown as a dash
        text = f"{name:38s} {'-' if value is None else format(value, '8.4f'):>8s}"
        if baseline and base is not None:
            text += f" {base:14.4f}"
        return text

    learned = report.get("learned_answers")
    if learned is None:
        lines.append(row("overall", report["rmse"], baseline and baseline["rmse"]))
    else:  # the headline is what the model learned; the never-learned answers only add noise
        answers = sum(v is not None for v in learned["per_answer"].values())
        lines.append(row(f"overall, the {answers} learned answers", learned["rmse"],
                         baseline and baseline["learned_answers"]["rmse"]))
        lines.append(row(f"overall, all {len(report['evaluated_columns'])} with targets",
                         report["rmse"], baseline and baseline["rmse"]))
    agreement = report.get("majority_agreement") or {}
    base_agreement = (baseline or {}).get("majority_agreement") or {}
    for q in QUESTIONS:
        key = f"Q{q.number}"
        if report["per_question"][key] is None:
            continue
        text = row(f"Q{q.number} {q.topic}", report["per_question"][key],
                   baseline and baseline["per_question"][key])
        if agreement.get(key):
            text += (f"   top answer = volunteers' in {agreement[key]['agreement']:.1%} of "
                     f"{agreement[key]['galaxies']}")
            if base_agreement.get(key):
                text += f" (mean: {base_agreement[key]['agreement']:.1%})"
        lines.append(text)
        for column in q.columns:
            lines.append(row(f"  {answer_name(column)}", report["per_answer"][column],
                             baseline and baseline["per_answer"][column]))
    return "\n".join(lines)


def mean_baseline(evaluation: Evaluation, train_means: np.ndarray | None = None) -> dict:
    """RMSE of a constant prediction (default: this set's own mean, an optimistic baseline)."""
    means = column_means(evaluation.targets) if train_means is None else np.asarray(train_means)
    return score(np.broadcast_to(means, evaluation.targets.shape), evaluation.targets,
                 evaluation.report.get("untrained_columns_with_targets") or ())


# A model trained on every labelled galaxy has no validation split of its own. Its accuracy is
# then that of its recipe: the same training run on other splits, each scored on the galaxies it
# held out. Those scores travel in the checkpoint as ``meta["recipe_validation"]``.

# TrainConfig fields that may differ between such runs without changing the recipe
NOT_RECIPE = frozenset({"seed", "val_fraction", "out", "images", "labels", "device", "workers",
                        "cache_dir", "resume"})


def recipe_differences(config: dict, other: dict) -> list[str]:
    """TrainConfig fields (outside ``NOT_RECIPE``) whose values differ between two runs; a field
    that one record lacks (written before the field existed) counts as its default. For
    ``init_from`` only whether a run was fine-tuned counts: each split's run must start from a
    checkpoint of its own, one that never saw its held-out galaxies."""
    defaults = field_defaults(TrainConfig)

    def value(record, k):
        found = record.get(k, defaults.get(k))
        return bool(found) if k == "init_from" else found

    keys = (set(config) | set(other)) - NOT_RECIPE
    return sorted(k for k in keys if value(config, k) != value(other, k))


def heldout_split(evaluation: dict, evaluation_tta: dict | None = None) -> dict:
    """One held-out split's record from ``train.evaluate --split val --json`` output(s)."""
    if evaluation.get("split") != "val":
        raise DataError(f"{evaluation.get('checkpoint', 'an evaluation')} is not a --split val "
                        f"evaluation, so it is not held out")
    if evaluation_tta is not None and evaluation_tta.get("checkpoint") != evaluation.get(
            "checkpoint"):
        raise DataError("the TTA evaluation is of another checkpoint than the plain one")
    if not isinstance((evaluation.get("model") or {}).get("rmse"), float):
        raise DataError(f"{evaluation.get('checkpoint', 'an evaluation')} has no model RMSE")
    return {
        "split_seed": (evaluation.get("train_config") or {}).get("seed"),
        "epoch": evaluation.get("epoch"),
        "model": evaluation["model"],
        "model_tta": (evaluation_tta or {}).get("model"),
        "mean_baseline": evaluation.get("mean_baseline"),
    }


def mean_over_splits(splits: list[dict]) -> dict:
    """Overall and per-question RMSE averaged over held-out splits (model, TTA, baseline), and
    the agreement with the volunteers' majority per question where every split has it (the
    share and the galaxies counted, both averaged over the splits)."""
    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    def mean_agreement(reports, key):
        counts = [(r.get("majority_agreement") or {}).get(key) for r in reports]
        if not counts or any(c is None for c in counts):
            return None
        return {"agreement": mean([c["agreement"] for c in counts]),
                "galaxies": mean([c["galaxies"] for c in counts])}

    summary = {"splits": len(splits)}
    for key in ("model", "model_tta", "mean_baseline"):
        reports = [s.get(key) or {} for s in splits]
        summary[key] = {
            "rmse": mean([r.get("rmse") for r in reports]),
            "per_question": {f"Q{q.number}": mean([(r.get("per_question") or {}).get(
                f"Q{q.number}") for r in reports]) for q in QUESTIONS},
            "per_answer": {c: mean([(r.get("per_answer") or {}).get(c) for r in reports])
                           for c in ANSWER_COLUMNS},
            "majority_agreement": {f"Q{q.number}": mean_agreement(reports, f"Q{q.number}")
                                   for q in QUESTIONS},
        }
    return summary


def shown_by_default(mean: dict) -> dict:
    """Of ``mean_over_splits``' reports, the one for the predictions the app and
    ``train.predict`` make by default: the 8-view average where it was measured, else one view."""
    return mean["model_tta"] if mean["model_tta"]["rmse"] is not None else mean["model"]


def learning_curve_fit(sizes, rmses) -> dict | None:
    """Fit ``rmse = floor + scale * n ** -exponent`` to (training galaxies, held-out RMSE) points.

    The floor stands for what more data of the same kind cannot remove (vote noise, the recipe);
    the exponent is searched on a grid, floor and scale solved by least squares for each. Needs
    three or more distinct sizes and RMSE falling with size; returns None otherwise (a curve
    that does not fall gives no basis to extrapolate). ``predict(n)`` extrapolates.
    """
    n = np.asarray(sizes, dtype=np.float64)
    r = np.asarray(rmses, dtype=np.float64)
    if len(np.unique(n)) < 3 or len(n) != len(r):
        return None
    order = np.argsort(n)
    if not np.all(np.diff(r[order]) < 0):
        return None
    best = None
    for exponent in np.linspace(0.02, 3.0, 1491):
        design = np.stack([np.ones_like(n), n ** -exponent], axis=1)
        (floor, scale), *_ = np.linalg.lstsq(design, r, rcond=None)
        if scale <= 0 or floor < 0:
            continue
        error = float(np.sum((design @ (floor, scale) - r) ** 2))
        if best is None or error < best["sse"]:
            best = {"floor": float(floor), "scale": float(scale), "exponent": float(exponent),
                    "sse": error}
    if best is None:
        return None
    best["predict"] = lambda size: best["floor"] + best["scale"] * float(size) ** -best["exponent"]
    return best
