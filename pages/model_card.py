"""Model card: what the active model is, how it was trained, how well it does, its limits."""

import os

import pandas as pd
import streamlit as st

from galaxy_core import evaluate, paths, registry
from galaxy_core.augment import TTA_VIEWS
from galaxy_core.card import card_blocks
from galaxy_core.checkpoint import epochs_before_last_stage, training_stages
from galaxy_core.schema import QUESTIONS
from galaxy_core.faithfulness import report_markdown
from galaxy_core.uncertainty import coverage_rows
from pages.common import active_model, faithfulness_report

st.title("📄 Model card")
loaded = active_model()
if loaded is None:
    st.stop()

info = registry.describe_model(loaded)
shipped = os.path.abspath(loaded.path) == os.path.abspath(paths.DEFAULT_MODEL)
st.markdown(f"**{registry.model_label(loaded.path)}**: a ResNet18 that predicts the share of "
            "Galaxy Zoo volunteers who would give each answer. Lower RMSE is better; predicting "
            "every galaxy as the average galaxy (the *mean-prediction baseline*) is the bar to "
            "beat.")
st.subheader("How good is it?")
heldout = info["heldout"]
before = info["heldout_before_fine_tune"]  # the scores are of the model it was fine-tuned from
stages = training_stages(loaded.meta)
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
    if before:  # said before the numbers, where nobody misses it
        last = stages[-1]["train_config"]
        st.info(f"These held-out scores are of the model **before its last training stage** "
                f"({last.get('epochs')} epochs with '{last.get('augment')}' augmentation, see "
                f"the full card's Recipe), which was not itself run on the held-out splits.")
    left, views, middle, right = st.columns(4)
    left.metric("Pre-fine-tune held-out RMSE" if before
                else f"Held-out RMSE (recipe, {heldout['splits']} splits)",
                f"{heldout['model']['rmse']:.4f}",
                help="This model was trained on every labelled galaxy, so none are left to test "
                     "it on. The same recipe trained on other splits scored this on the "
                     f"galaxies each one held out (mean over {heldout['splits']} splits), one "
                     "view per galaxy." +
                     (" These are the scores of the model before its last fine-tune (see the "
                      "full card's Recipe), which was not itself run on those splits."
                      if before else ""))
    columns = {"held-out RMSE": heldout["model"]["per_question"]}
    tta = heldout["model_tta"]["rmse"]
    views.metric(f"Averaged over {TTA_VIEWS} views", "n/a" if tta is None else f"{tta:.4f}",
                 help=f"The same held-out galaxies, predictions averaged over the {TTA_VIEWS} "
                      "flips and right-angle rotations: what the Classify page and "
                      "`train.predict` do by default." + (
                          " Of the model before its last fine-tune." if before else "") + (
                          " n/a: the checkpoint carries no such evaluation."
                          if tta is None else ""))
    if tta is not None:
        columns[f"held-out RMSE, {TTA_VIEWS} views"] = heldout["model_tta"]["per_question"]
    middle.metric("Mean-prediction baseline", f"{heldout['mean_baseline']['rmse']:.4f}")
    baseline = heldout["mean_baseline"]["per_question"]
    agreement = evaluate.shown_by_default(heldout).get("majority_agreement") or {}
    baseline_agreement = heldout["mean_baseline"].get("majority_agreement") or {}
right.metric(f"Input (centre {info['crop_fraction']:.0%} of the frame)", f"{info['image_size']} px")
trained_for = (f"epoch {info['epoch']} of its last stage, after "
               f"{epochs_before_last_stage(stages)} epochs before it"
               if len(stages) > 1 else f"epoch {info['epoch']}")
st.caption(f"Trained {info['created']} on {info['data']}; {info['head']} head; "
           f"{trained_for}. Accuracy: {info['accuracy']}.")

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
    scored = [q for q in QUESTIONS if any(values.get(f"Q{q.number}") is not None
                                          for values in scores.values())]
    st.dataframe(pd.DataFrame([{
        "question": f"Q{q.number} {q.topic}",
        **{name: values.get(f"Q{q.number}") for name, values in scores.items()},
        **{name: percent(values.get(f"Q{q.number}")) for name, values in shares.items()},
    } for q in scored]), hide_index=True, width="stretch", placeholder="—",
        column_config=config)
    unscored = [f"Q{q.number} {q.topic}" for q in QUESTIONS if q not in scored]
    st.caption((f"Not scored (no targets in the labels): {', '.join(unscored)}. "
                if unscored else "") + "— : nothing to score."
               + (" Agreement: how often the model's likeliest answer is the one most "
                  "volunteers gave, over the galaxies where most volunteers reached the "
                  "question." if shares else ""))

PLOTS = [("rmse_per_question.png", "RMSE per question (dashed: over all questions)"),
         ("pred_vs_true.png", "Predicted against volunteer fraction, per learned answer")]
plots = [(os.path.join(os.path.dirname(paths.DEFAULT_MODEL), name), caption)
         for name, caption in PLOTS]
if shipped and all(os.path.isfile(path) for path, _ in plots):
    # each at most its own size: the 17-panel grid needs the page's whole width to be read
    # (on a phone, the picture's full-screen button enlarges it)
    for path, caption in plots:
        st.image(path, caption=f"{caption} (split 0's 800 held-out galaxies, one view"
                               f"{', the model before its fine-tune' if before else ''})",
                 width="content")

st.subheader("How sure is each answer?")
calibration = loaded.calibration
if calibration is None:
    st.markdown("This model carries no calibrated intervals, so the Classify page shows its "
                "answers without them (`python -m train.calibrate` adds them from a run's "
                "held-out galaxies).")
else:
    st.markdown(f"Every learned answer comes with an interval (the black line across its bar "
                f"on the Classify page) meant to hold the share of volunteers giving that answer "
                f"for {calibration.level:.0%} of galaxies. Calibrated on {calibration.source}. "
                f"How often the intervals of the model that held those galaxies out contained "
                f"the volunteers' share, set on one half of them and counted on the other:")
    rows = [{"question": name, "coverage": 100 * row["coverage"], "mean width":
             row["mean_width"], "n": row["n"]}
            for name, row in coverage_rows(calibration.coverage or {})]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
            "coverage": st.column_config.NumberColumn(format="%.1f%%"),
            "mean width": st.column_config.NumberColumn(format="%.3f")})

st.subheader("What was it trained on?")
st.markdown(f"{info['data'].capitalize()}; learned "
            f"{', '.join(info['learned_questions']) or 'nothing'}.")

st.subheader("What it cannot do")
card = []
if shipped and os.path.isfile(paths.MODEL_CARD):
    with open(paths.MODEL_CARD, encoding="utf-8") as handle:
        card = card_blocks(handle.read())
limits = [b for b in card if b.title == "Limits"]
if limits:
    st.markdown(limits[0].markdown)
else:
    st.markdown(
        ("- Not learned (no training targets): " + ", ".join(info["not_learned_questions"]) +
         ".\n" if info["not_learned_questions"] else "") +
        "- Trained on SDSS galaxies in Kaggle-style cut-outs; other surveys, processed images "
        "or framings far from those are outside what it has seen.\n"
        "- Predictions estimate volunteer vote fractions, not physical truth.")

report = faithfulness_report() if shipped else None
if report:
    st.subheader("Can the Grad-CAM maps be trusted?")
    st.caption("Each map scored by how fast the answer's probability falls as its most salient "
               "pixels are replaced by sky (deletion: lower is better) and rises as they are "
               "revealed on a blurred copy (insertion: higher is better), beside a random map "
               "and a centred blob: a map must beat the centre to show anything." +
               (" The 100 galaxies scored are split 0's validation galaxies, which this model, "
                "trained on all of them, has seen." if info["trained_on_all"] else ""))
    with st.expander("The table: every method and layer"):
        st.markdown(report_markdown(report))

if card:
    st.subheader("The full card")
    for block in card:
        if block.title == "Limits" or block.title.startswith(("Uncertainty", "Grad-CAM")):
            continue  # shown above
        if block.folded or block.title.startswith("Accuracy on held-out"):
            with st.expander(block.title or "More"):
                st.markdown(block.markdown)
        else:
            if block.title:
                st.markdown(f"#### {block.title}")
            st.markdown(block.markdown)
else:
    st.info("This model was trained here; the full written card describes the shipped model.")
