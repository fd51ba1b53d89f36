"""Masked losses and RMSE, Kaggle style: one RMSE over all known galaxy x answer cells.

Targets hold NaN where an answer is unknown; those cells count nowhere.
"""

from __future__ import annotations

import numpy as np
import torch

from .schema import ANSWER_COLUMNS, COLUMN_INDEX, QUESTIONS, question_slice


def masked_mse(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the known cells of (B, 37) ``targets``."""
    known = ~torch.isnan(targets)
    diff = torch.where(known, preds - torch.nan_to_num(targets), torch.zeros_like(preds))
    return diff.pow(2).sum() / known.sum().clamp(min=1)


def _rmse(sq_sum: float, count: float):
    return float(np.sqrt(sq_sum / count)) if count > 0 else None


def rmse_report(preds: np.ndarray, targets: np.ndarray) -> dict:
    """RMSE overall, per question and per answer over known cells; None where nothing is known."""
    preds = np.asarray(preds, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if preds.shape != targets.shape:
        raise ValueError(f"preds {preds.shape} and targets {targets.shape} differ in shape")
    known = ~np.isnan(targets)
    sq = np.where(known, (preds - np.nan_to_num(targets)) ** 2, 0.0)
    sq_by_answer, n_by_answer = sq.sum(axis=0), known.sum(axis=0)
    per_answer = {c: _rmse(sq_by_answer[i], n_by_answer[i]) for i, c in enumerate(ANSWER_COLUMNS)}
    per_question = {}
    for q in QUESTIONS:
        sl = question_slice(q)
        per_question[f"Q{q.number}"] = _rmse(sq_by_answer[sl].sum(), n_by_answer[sl].sum())
    return {
        "rmse": _rmse(sq.sum(), known.sum()),
        "per_question": per_question,
        "per_answer": per_answer,
        "galaxies": int(len(targets)),
        "known_cells": int(known.sum()),
    }


def majority_agreement(preds: np.ndarray, targets: np.ndarray, min_reached: float = 0.5) -> dict:
    """Per question: how often the predicted top answer is the volunteers' top answer.

    Counted over the galaxies where all of the question's answers are known and at least
    ``min_reached`` of the volunteers reached the question (its answers' Kaggle-weighted
    fractions sum to that much), so that there is a majority to agree with. Returns
    ``{"Q1": {"agreement": share, "galaxies": n}, ...}``, None where no galaxy qualifies."""
    preds = np.asarray(preds, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    agreement = {}
    for q in QUESTIONS:
        sl = question_slice(q)
        wanted, predicted = targets[:, sl], preds[:, sl]
        counted = ~np.isnan(wanted).any(axis=1)
        counted[counted] = wanted[counted].sum(axis=1) >= min_reached
        n = int(counted.sum())
        agreement[f"Q{q.number}"] = None if n == 0 else {
            "agreement": float((wanted[counted].argmax(axis=1)
                                == predicted[counted].argmax(axis=1)).mean()),
            "galaxies": n}
    return agreement


def score(preds: np.ndarray, targets: np.ndarray, untrained=()) -> dict:
    """``rmse_report`` plus agreement with the volunteers' majority; with ``untrained`` answers
    (the shipped model's 20, scored on full Kaggle labels), also ``learned_answers``: the
    report over the answers the model learned."""
    report = rmse_report(preds, targets)
    report["majority_agreement"] = majority_agreement(preds, targets)
    if untrained:
        report["learned_answers"] = rmse_report(preds, without_columns(targets, untrained))
    return report


def without_columns(targets: np.ndarray, columns) -> np.ndarray:
    """(N, 37) targets with ``columns`` made unknown (NaN), so no score counts them."""
    kept = np.array(targets, dtype=np.float64)
    kept[:, [COLUMN_INDEX[c] for c in columns]] = np.nan
    return kept
