"""Per-answer uncertainty: calibrated intervals from held-out residuals (split conformal).

On galaxies a model never trained on, each learned answer's residual ``|volunteers - model|`` is
divided by how far that prediction could move at all, ``sqrt(p (1 - p)) + floor`` (a vote
fraction near 0 or 1 has little room to be wrong; one near 0.5 has most), and the
``ceil((n + 1) level) / n`` quantile ``q`` of those n ratios is kept per answer (split-conformal
prediction, Vovk et al. 2005; Lei et al. 2018). A new galaxy's interval is then
``p ± q · (sqrt(p (1 - p)) + floor)``, clipped to [0, 1]: if new galaxies are like the held-out
ones, it holds the volunteers' fraction ``level`` of the time for every answer.

A ``Calibration`` is plain data stored in the checkpoint (key ``"intervals"``), so it loads with
``weights_only=True`` and travels with the weights it describes. ``python -m train.calibrate``
writes it; ``coverage`` measures it on galaxies the quantiles were not fitted on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .schema import ANSWER_COLUMNS, ID_COLUMN, QUESTIONS, question_slice

LEVEL = 0.8  # the app's and the CSV's interval: volunteers' fraction inside it 80% of the time
SCALES = ("binomial", "constant")  # residual / (sqrt(p(1-p)) + floor), or the residual itself
FLOOR = 0.05  # keeps a prediction of exactly 0 or 1 from getting a zero-width interval


@dataclass(frozen=True)
class Calibration:
    level: float  # nominal coverage of each interval, e.g. 0.8
    quantiles: dict  # answer column -> q (only the answers it was calibrated for)
    scale: str = "binomial"  # one of SCALES
    floor: float = FLOOR
    source: str = ""  # what the residuals came from: model, galaxies, split
    coverage: dict = field(default_factory=dict)  # measured on galaxies not used for quantiles
    # > 0: calibrated for that earlier training stage of the model, then carried over to it
    # (train.export --intervals-from); 0: for the model itself
    stage: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw) -> "Calibration":
        """Validate a stored calibration; ``ValueError`` names what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError(f"intervals must be a dict, got {type(raw).__name__}")
        try:
            calibration = cls(level=float(raw["level"]),
                              quantiles={str(k): float(v) for k, v in raw["quantiles"].items()},
                              scale=str(raw.get("scale", "binomial")),
                              floor=float(raw.get("floor", FLOOR)),
                              source=str(raw.get("source", "")),
                              coverage=dict(raw.get("coverage", {})),
                              stage=int(raw.get("stage", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"damaged intervals record ({exc})") from exc
        if not 0 < calibration.level < 1:
            raise ValueError(f"intervals level must be in (0, 1), got {calibration.level}")
        if calibration.scale not in SCALES:
            raise ValueError(f"intervals scale must be one of {SCALES}, got {calibration.scale!r}")
        unknown = sorted(set(calibration.quantiles) - set(ANSWER_COLUMNS))
        if unknown:
            raise ValueError(f"intervals name unknown answer columns {unknown[:3]}")
        if any(not q >= 0 for q in calibration.quantiles.values()):  # NaN fails too
            raise ValueError("intervals quantiles must be >= 0")
        return calibration

    @property
    def columns(self) -> tuple[str, ...]:
        """The calibrated answers, in Kaggle order."""
        return tuple(c for c in ANSWER_COLUMNS if c in self.quantiles)


def scale_of(preds: np.ndarray, scale: str, floor: float) -> np.ndarray:
    """How far each prediction could move: the per-prediction unit of a residual."""
    if scale == "binomial":
        p = np.clip(preds, 0.0, 1.0)
        return np.sqrt(p * (1.0 - p)) + floor
    if scale == "constant":
        return np.ones_like(preds)
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest of n scores: a new score from the same
    distribution falls at or below it with probability >= ``level``; ``inf`` when n is too
    small to promise that (the interval is then the whole [0, 1])."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * level)
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


def fit(preds: np.ndarray, targets: np.ndarray, level: float = LEVEL, scale: str = "binomial",
        floor: float = FLOOR, source: str = "") -> Calibration:
    """(N, 37) predictions and volunteer fractions (NaN where unknown) of held-out galaxies ->
    a ``Calibration`` for every answer with at least one known target."""
    if preds.shape != targets.shape or preds.shape[1:] != (len(ANSWER_COLUMNS),):
        raise ValueError(f"preds and targets must both be (N, {len(ANSWER_COLUMNS)}), got "
                         f"{preds.shape} and {targets.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    ratios = np.abs(targets - preds) / scale_of(preds, scale, floor)
    quantiles = {}
    for j, column in enumerate(ANSWER_COLUMNS):
        known = ~np.isnan(targets[:, j])
        if known.any():
            quantiles[column] = conformal_quantile(ratios[known, j], level)
    return Calibration(level=level, quantiles=quantiles, scale=scale, floor=floor, source=source)


def bounds(calibration: Calibration, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 37) predictions -> (low, high), each (N, 37); NaN for answers not calibrated."""
    preds = np.asarray(preds, dtype=np.float64)
    q = np.array([calibration.quantiles.get(c, np.nan) for c in ANSWER_COLUMNS])
    half = q * scale_of(preds, calibration.scale, calibration.floor)
    return np.clip(preds - half, 0.0, 1.0), np.clip(preds + half, 0.0, 1.0)


def held_cells(calibration: Calibration, preds: np.ndarray, targets: np.ndarray):
    """(inside, width, known), each (N, 37): whether each known target of a calibrated answer
    lies in its interval, the interval's width, and which cells count."""
    low, high = bounds(calibration, preds)
    known = ~np.isnan(targets) & ~np.isnan(low)
    return known & (targets >= low) & (targets <= high), high - low, known


def coverage(calibration: Calibration, preds: np.ndarray, targets: np.ndarray) -> dict:
    """How often the intervals hold the volunteers' fraction, and how wide they are, overall,
    per question and per answer (over the known targets of calibrated answers)."""
    return summarise(*held_cells(calibration, preds, targets), calibration.level)


def cross_fitted_coverage(preds: np.ndarray, targets: np.ndarray, level: float = LEVEL,
                          scale: str = "binomial", floor: float = FLOOR, seed: int = 0) -> dict:
    """Coverage measured honestly on the calibration galaxies themselves: split them in two at
    random, fit on one half and measure on the other, both ways round, and pool the counts."""
    _, *cells = cross_fitted_cells(preds, targets, level, scale, floor, seed)
    return summarise(*cells, level)


def cross_fitted_cells(preds: np.ndarray, targets: np.ndarray, level: float = LEVEL,
                       scale: str = "binomial", floor: float = FLOOR, seed: int = 0):
    """``cross_fitted_coverage``'s pooled cells before they are summarised: (rows, inside,
    width, known), where row k of the three (M, 37) arrays is galaxy ``rows[k]``, counted with
    intervals fitted on the other half."""
    split = halves(len(preds), seed)
    parts = [held_cells(fit(preds[fit_rows], targets[fit_rows], level, scale, floor),
                        preds[test_rows], targets[test_rows]) for fit_rows, test_rows in split]
    rows = np.concatenate([test_rows for _, test_rows in split])
    return (rows, *(np.concatenate(cells) for cells in zip(*parts)))


def halves(n: int, seed: int = 0):
    """(fit rows, test rows) twice: a seeded random split of n rows in two, then swapped."""
    order = np.random.default_rng(seed).permutation(n)
    first, second = order[: n // 2], order[n // 2:]
    return (first, second), (second, first)


def summarise(inside: np.ndarray, width: np.ndarray, known: np.ndarray, level: float) -> dict:
    """(N, 37) indicators of "interval holds the target", widths and known cells -> coverage
    and mean width overall, per question ("Q1") and per answer column."""
    def summary(mask):
        n = int(mask.sum())
        return {"n": n, "coverage": float(inside[mask].mean()) if n else None,
                "mean_width": float(width[mask].mean()) if n else None}

    def only(columns: slice) -> np.ndarray:
        mask = np.zeros_like(known)
        mask[:, columns] = known[:, columns]
        return mask

    per_question, per_answer = {}, {}
    for question in QUESTIONS:
        columns = question_slice(question)
        for column, j in zip(question.columns, range(columns.start, columns.stop)):
            if known[:, j].any():
                per_answer[column] = summary(only(slice(j, j + 1)))
        if known[:, columns].any():
            per_question[f"Q{question.number}"] = summary(only(columns))
    return {"level": level, "all": summary(known), "per_question": per_question,
            "per_answer": per_answer}


def coverage_rows(report: dict) -> list[tuple[str, dict]]:
    """("Q1 shape", summary) for each question the report counted, then ("all", summary)."""
    rows = [(f"Q{q.number} {q.topic}", report.get("per_question", {}).get(f"Q{q.number}"))
            for q in QUESTIONS] + [("all", report.get("all"))]
    return [(name, row) for name, row in rows if row and row.get("n")]


def learned_targets(targets: np.ndarray, trained_columns) -> np.ndarray:
    """``targets`` with the answers a model never learned blanked (NaN): never calibrated."""
    learned = [ANSWER_COLUMNS.index(c) for c in trained_columns]
    kept = np.full_like(targets, np.nan)
    kept[:, learned] = targets[:, learned]
    return kept


FLAGS_COLUMN = "unlike_training"  # the intervals CSV's last column: why a row has no bounds


def interval_columns(calibration: Calibration) -> list[str]:
    """``Class1.1_low, Class1.1_high, ...`` for the calibrated answers, in Kaggle order."""
    return [f"{c}_{end}" for c in calibration.columns for end in ("low", "high")]


def interval_table(calibration: Calibration, galaxy_ids, preds: np.ndarray, flags=None):
    """GalaxyID then each calibrated answer's low and high bound, one row per galaxy. With
    ``flags`` (per galaxy, why its image is unlike the training cut-outs; "" when it is not), a
    last column of them, and a flagged galaxy's bounds left empty: calibrated on galaxies like
    the training ones, they would promise what they do not hold."""
    low, high = bounds(calibration, preds)
    index = [ANSWER_COLUMNS.index(c) for c in calibration.columns]
    table = pd.DataFrame(np.stack([low[:, index], high[:, index]], axis=2).reshape(
        len(preds), 2 * len(index)), columns=interval_columns(calibration))
    table.insert(0, ID_COLUMN, list(galaxy_ids))
    if flags is not None:
        flags = list(flags)
        table.loc[[bool(f) for f in flags], interval_columns(calibration)] = np.nan
        table[FLAGS_COLUMN] = flags
    return table
