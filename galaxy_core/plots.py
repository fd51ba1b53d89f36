"""Pictures people would rather look at than read: training curves and evaluation charts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .files import replacing  # noqa: E402
from .schema import ANSWER_COLUMNS, answer_name  # noqa: E402


def _save(fig, path) -> str:
    try:
        with replacing(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def save_training_curves(history: list, path) -> str:
    """Train loss and validation RMSE per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_rmse) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train MSE")
    if any(h.get("val_loss") is not None for h in history):
        ax_loss.plot(epochs, [h.get("val_loss") for h in history], marker="o", label="val MSE")
        ax_rmse.plot(epochs, [h.get("val_rmse") for h in history], marker="o", color="C2")
    ax_loss.set(xlabel="epoch", ylabel="MSE", yscale="log", title="loss")
    ax_loss.legend()
    ax_rmse.set(xlabel="epoch", ylabel="RMSE", title="validation RMSE (known answers)")
    ax_rmse.grid(alpha=0.3)
    return _save(fig, path)


def save_question_rmse_chart(report: dict, path) -> str:
    items = [(q, v) for q, v in report["per_question"].items() if v is not None]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar([q for q, _ in items], [v for _, v in items], color="C0")
    ax.axhline(report["rmse"], color="C3", linestyle="--", label=f"overall {report['rmse']:.4f}")
    ax.set(ylabel="RMSE", title="RMSE per question (questions without targets omitted)")
    ax.legend()
    return _save(fig, path)


def save_pred_vs_true(preds: np.ndarray, targets: np.ndarray, path) -> str:
    """One small scatter per answer that has targets."""
    known = [i for i in range(len(ANSWER_COLUMNS)) if not np.isnan(targets[:, i]).all()]
    cols = 6
    rows = max(1, int(np.ceil(len(known) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, known):
        mask = ~np.isnan(targets[:, i])
        ax.axis("on")
        ax.scatter(targets[mask, i], preds[mask, i], s=3, alpha=0.4)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(answer_name(ANSWER_COLUMNS[i]), fontsize=7)
        ax.tick_params(labelsize=6)
    fig.supxlabel("volunteer fraction")
    fig.supylabel("predicted")
    return _save(fig, path)
