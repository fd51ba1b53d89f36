"""Model card: what the active model is, how it was trained, how well it does, its limits."""

import os

import pandas as pd
import streamlit as st

from galaxy_core import paths, registry
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
left, middle, right = st.columns(3)
if own or not heldout:
    left.metric("Validation RMSE", f"{info['val_rmse']:.4f}" if own else "n/a")
    middle.metric("Mean-prediction baseline", f"{info['baseline_rmse']:.4f}"
                  if info["baseline_rmse"] else "n/a")
    per_question = (best.get("val") or {}).get("per_question") or {}
    baseline = (best.get("baseline_val") or {}).get("per_question") or {}
else:
    left.metric(f"Held-out RMSE (recipe, {heldout['splits']} splits)",
                f"{heldout['model']['rmse']:.4f}",
                help="This model was trained on every labelled galaxy, so none are left to test "
                     "it on. The same recipe trained on other splits scored this on the "
                     "galaxies each one held out (mean over splits).")
    middle.metric("Mean-prediction baseline", f"{heldout['mean_baseline']['rmse']:.4f}")
    per_question = heldout["model"]["per_question"]
    baseline = heldout["mean_baseline"]["per_question"]
right.metric("Input", f"{info['image_size']} px, centre {info['crop_fraction']:.0%}")
st.caption(f"Trained {info['created']} on {info['data']}; {info['head']} head; epoch "
           f"{info['epoch']}. Accuracy: {info['accuracy']}.")

if per_question:
    st.dataframe(pd.DataFrame([{
        "question": f"Q{q.number} {q.topic}",
        "validation RMSE" if own else "held-out RMSE": per_question.get(f"Q{q.number}"),
        "mean baseline": baseline.get(f"Q{q.number}"),
        "learned": f"Q{q.number} {q.topic}" in info["learned_questions"],
    } for q in QUESTIONS]), hide_index=True, width="stretch")

if os.path.abspath(loaded.path) == os.path.abspath(paths.DEFAULT_MODEL) and \
        os.path.isfile(paths.MODEL_CARD):
    st.markdown(open(paths.MODEL_CARD, encoding="utf-8").read())
else:
    st.info("This model was trained here; the full written card describes the shipped model.")
