"""Model card: what the active model is, how it was trained, how well it does, its limits."""

import os

import pandas as pd
import streamlit as st

from galaxy_core import evaluate, paths, registry
from galaxy_core.augment import TTA_VIEWS
from galaxy_core.schema import QUESTIONS
from pages.common import active_model

st.title("📄 Model card")
loaded = active_model()
if loaded is None:
    st.stop()

info = registry.describe_model(loaded)
st.subheader(f"Active model: {registry.model_label(loaded.path)}")
heldout = info["heldout"]
own = info["val_rmse"] is not None
best = ((loaded.meta.get("metrics") or {}).get("best") or {})
if own or not heldout:
    left, middle, right = st.columns(3)
    left.metric("Validation RMSE", f"{info['val_rmse']:.4f}" if own else "n/a")
    middle.metric("Mean-prediction baseline", f"{info['baseline_rmse']:.4f}"
                  if info["baseline_rmse"] else "n/a")
    columns = {"validation RMSE": (best.get("val") or {}).get("per_question") or {}}
    baseline = (best.get("baseline_val") or {}).get("per_question") or {}
    agreement = (best.get("val") or {}).get("majority_agreement") or {}
    baseline_agreement = (best.get("baseline_val") or {}).get("majority_agreement") or {}
else:
    left, views, middle, right = st.columns(4)
    left.metric(f"Held-out RMSE (recipe, {heldout['splits']} splits)",
                f"{heldout['model']['rmse']:.4f}",
                help="This model was trained on every labelled galaxy, so none are left to test "
                     "it on. The same recipe trained on other splits scored this on the "
                     "galaxies each one held out (mean over splits), one view per galaxy.")
    columns = {"held-out RMSE": heldout["model"]["per_question"]}
    tta = heldout["model_tta"]["rmse"]
    views.metric(f"Averaged over {TTA_VIEWS} views", "n/a" if tta is None else f"{tta:.4f}",
                 help=f"The same held-out galaxies, predictions averaged over the {TTA_VIEWS} "
                      "flips and right-angle rotations: what the Classify page and "
                      "`train.predict` do by default (n/a: the checkpoint carries no such "
                      "evaluation).")
    if tta is not None:
        columns[f"held-out RMSE, {TTA_VIEWS} views"] = heldout["model_tta"]["per_question"]
    middle.metric("Mean-prediction baseline", f"{heldout['mean_baseline']['rmse']:.4f}")
    baseline = heldout["mean_baseline"]["per_question"]
    agreement = evaluate.shown_by_default(heldout).get("majority_agreement") or {}
    baseline_agreement = heldout["mean_baseline"].get("majority_agreement") or {}
right.metric(f"Input (centre {info['crop_fraction']:.0%} of the frame)", f"{info['image_size']} px")
st.caption(f"Trained {info['created']} on {info['data']}; {info['head']} head; epoch "
           f"{info['epoch']}. Accuracy: {info['accuracy']}.")

AGREES = "top answer = volunteers' majority"
AGREES_BASELINE = "same, always the training majority"


def percent(counted: dict | None) -> float | None:
    return None if not counted else 100 * counted["agreement"]


if any(columns.values()):
    scores = {**columns, "mean baseline": baseline}
    counted = any(agreement.values())  # records made before train.evaluate counted it have none
    shares = {AGREES: agreement, AGREES_BASELINE: baseline_agreement} if counted else {}
    config = {name: st.column_config.NumberColumn(format="%.4f") for name in scores}
    config.update({name: st.column_config.NumberColumn(format="%.1f%%") for name in shares})
    st.dataframe(pd.DataFrame([{
        "question": f"Q{q.number} {q.topic}",
        **{name: values.get(f"Q{q.number}") for name, values in scores.items()},
        **{name: percent(values.get(f"Q{q.number}")) for name, values in shares.items()},
        "learned": f"Q{q.number} {q.topic}" in info["learned_questions"],
    } for q in QUESTIONS]), hide_index=True, width="stretch", placeholder="—",
        column_config=config)
    st.caption("— : no targets for that question in the labels, so nothing to score."
               + (" Agreement: how often the model's likeliest answer is the one most "
                  "volunteers gave, over the galaxies where most volunteers reached the "
                  "question." if shares else ""))

if os.path.abspath(loaded.path) == os.path.abspath(paths.DEFAULT_MODEL) and \
        os.path.isfile(paths.MODEL_CARD):
    st.markdown(open(paths.MODEL_CARD, encoding="utf-8").read())
else:
    st.info("This model was trained here; the full written card describes the shipped model.")
