"""Train (maintainers): the CLI's training config as a form, run in the background."""

import datetime as dt
import os

import pandas as pd
import streamlit as st

from galaxy_core import paths, registry
from galaxy_core.checkpoint import CheckpointError, resumed_config
from galaxy_core.config import (AUGMENTS, HEADS, OPTIMIZERS, PRECISIONS, SCHEDULES,
                                TrainConfig, field_defaults, field_help)
from galaxy_core.device import bfloat16_warning, describe, select_device
from galaxy_core.evaluate import NOT_RECIPE
from galaxy_core.data import DataError, read_labels, split_sizes
from galaxy_core.jobs import JobBusy
from galaxy_core.schema import QUESTION_OF_COLUMN
from pages.common import (active_model, admin_gate, configured_datasets, dataset_picker,
                          get_model, history_chart, read_labels_cached, session_access,
                          training_jobs, who)

st.title("🛠️ Train a model")

if not admin_gate("Training"):
    st.stop()
here = select_device("auto")  # where a run started from this page trains
st.caption(f"Unlocked: {session_access().reason}. Runs on {describe(here)}.")

jobs = training_jobs()

# Quick-look defaults (a few minutes on a CPU); the button below fills in a real recipe.
FORM_DEFAULTS = {
    "subset": 0, "val_fraction": 0.2, "epochs": 10, "batch_size": 32,
    "lr": 1e-3, "image_size": 96, "crop_fraction": 0.5, "schedule": "onecycle",
    "head": "tree", "augment": "full", "dropout": 0.25, "optimizer": "adam", "weight_decay": 0.0,
    "seed": 0, "train_fraction": 1.0, "pretrained": False, "freeze_backbone": False,
    "precision": "float32",
}
TRAIN_DEFAULTS = field_defaults(TrainConfig)
TRAIN_HELP = field_help(TrainConfig)


def key(name: str) -> str:
    return f"train_{name}"


for name, value in FORM_DEFAULTS.items():
    st.session_state.setdefault(key(name), value)

# a page opened (or reloaded) while a run is going shows that run's settings, once
running = jobs.state if jobs.state is not None and jobs.state.running else None
if running is not None and st.session_state.get("train_shown_run") != running.config.out:
    for name, default in FORM_DEFAULTS.items():
        st.session_state[key(name)] = type(default)(getattr(running.config, name))
    for dataset in configured_datasets():
        if dataset.labels and os.path.abspath(dataset.labels) == os.path.abspath(
                running.config.labels):
            st.session_state["train_dataset"] = dataset.name
    st.session_state["train_shown_run"] = running.config.out
if running is not None:
    st.info(f"A run is going ({os.path.basename(running.config.out)}): the form shows its "
            f"settings; a new run can start when it ends.")

selected = active_model()
recipe = (selected.meta.get("train_config") or {}) if selected is not None else {}
if st.button("Use the selected model's recipe", disabled=not recipe,
             help="Fill the form with the recipe of the model in the sidebar (the shipped "
                  "model: its published recipe). Data paths, validation fraction and seed stay "
                  "as they are."):
    for name, default in FORM_DEFAULTS.items():
        if name in NOT_RECIPE:  # the split (validation share, seed) stays the user's choice
            continue
        # a record from before a field existed was trained with that field's default
        value = recipe.get(name, TRAIN_DEFAULTS[name])
        st.session_state[key(name)] = type(default)(value)
    recorded = os.path.realpath(recipe.get("labels") or "")
    same_data = [d.name for d in configured_datasets()
                 if d.labels and os.path.realpath(d.labels) == recorded]
    if same_data:  # its training data too, where that is a configured dataset
        st.session_state["train_dataset"] = same_data[0]
    st.toast("Form filled with the selected model's recipe" + (
        f" and its data ({same_data[0]})" if same_data else
        "; its training data is not a configured dataset here, so pick one"))

with st.form("train_config"):
    dataset = dataset_picker("Training data (a configured dataset)", key="train_dataset")
    labels, images = dataset.labels, dataset.images
    try:
        frame = read_labels_cached(labels)
        answered = [c for c in frame.columns if c != "GalaxyID"]
        questions = sorted({QUESTION_OF_COLUMN[c].number for c in answered})
        questions = [f"Q{n}" for n in questions]
        st.caption(f"{len(frame)} labelled galaxies; {len(answered)} of 37 answer columns "
                   f"({', '.join(questions)}). More datasets: GALAXY_DATASETS "
                   f"(docs/publishing.md).")
    except DataError as exc:
        st.error(f"{exc}.")
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input("Subset size (0 = all)", 0, 10_000_000, key=key("subset"))
    c2.slider("Validation fraction", 0.0, 0.5, step=0.05, key=key("val_fraction"))
    c3.number_input("Epochs", 1, 1000, key=key("epochs"))
    c4.number_input("Batch size", 1, 1024, key=key("batch_size"))
    c5, c6, c7, c8 = st.columns(4)
    c5.number_input("Learning rate (peak)", 1e-6, 1.0, format="%.5f", key=key("lr"))
    c6.selectbox("Optimizer", OPTIMIZERS, key=key("optimizer"),
                 help="adam: weight decay is added to the gradient (the seed's Adam); adamw: "
                      "weight decay shrinks the weights directly, decoupled from the gradient")
    c7.number_input("Weight decay", 0.0, 1.0, format="%.6f", key=key("weight_decay"))
    c8.selectbox("LR schedule", SCHEDULES, key=key("schedule"))
    c9, c10, c11, c12 = st.columns(4)
    c9.number_input("Image size (px)", 16, 1024, key=key("image_size"))
    c10.slider("Centre crop (fraction of frame)", 0.1, 1.0, step=0.05, key=key("crop_fraction"))
    c11.selectbox("Output head", HEADS, key=key("head"))
    c12.selectbox("Augmentation", AUGMENTS, key=key("augment"))
    c13, c14, c15, c16, c17 = st.columns(5)
    c13.slider("Head dropout", 0.0, 0.9, step=0.05, key=key("dropout"))
    c14.number_input("Seed (split, initialisation, augmentation)", 0, 2**31 - 1, key=key("seed"))
    c15.slider("Share of training galaxies (learning curves)", 0.05, 1.0, step=0.05,
               key=key("train_fraction"))
    c16.checkbox("ImageNet weights", key=key("pretrained"),
                 help="start from torchvision's ResNet18 ImageNet weights; they must already be "
                      "in the torch cache (nothing is downloaded)")
    c17.checkbox("Freeze backbone", key=key("freeze_backbone"))
    caution = bfloat16_warning(here)
    st.selectbox("Arithmetic", PRECISIONS, key=key("precision"),
                 help=f"{TRAIN_HELP['precision']}. {caution or 'This machine has it natively'}.")
    checkpoints = registry.available_checkpoints()
    resumable = [p.replace("best.pt", "last.pt") for p in checkpoints
                 if os.path.isfile(p.replace("best.pt", "last.pt")) and p.endswith("best.pt")]
    start_left, start_right = st.columns(2)
    resume = start_left.selectbox("Resume from", [""] + resumable,
                                  format_func=lambda p: "(start fresh)" if not p else p,
                                  key="train_resume",
                                  help="continue an interrupted run where it stopped, with its "
                                       "own settings: only the data paths and the arithmetic "
                                       "are taken from this form")
    init_from = start_right.selectbox(
        "Fine-tune from", [""] + checkpoints,
        format_func=lambda p: "(no: from scratch, or ImageNet if ticked)" if not p else p,
        key="train_init_from",
        help="start a new run from a trained model's weights (its output head must match "
             "the one chosen above); image size, schedule and epochs are this run's own")
    submitted = st.form_submit_button("Start training", type="primary",
                                      disabled=bool(jobs.state and jobs.state.running))

if submitted:
    out = os.path.join(paths.RUNS_DIR, dt.datetime.now().strftime("run-%Y%m%d-%H%M%S"))
    settings = {name: st.session_state[key(name)] for name in FORM_DEFAULTS}
    try:
        if not resume:  # fail now, not after the images are decoded
            split_sizes(read_labels(labels), settings["subset"], TRAIN_DEFAULTS["subset_mode"],
                        settings["seed"], settings["val_fraction"], settings["train_fraction"])
        if resume:  # the run's own recipe, split and length; the form's only where they may change
            if init_from:
                raise ValueError("choose either a run to resume or a model to fine-tune from")
            config = resumed_config(resume, out=out, images=images, labels=labels, workers=0,
                                    device="auto", cache_dir="", precision=settings["precision"])
        else:
            config = TrainConfig(images=images, labels=labels, out=out, init_from=init_from,
                                 workers=0, **settings)
        jobs.start(config)
    except (ValueError, CheckpointError, JobBusy) as exc:  # DataError is a ValueError
        st.error(f"Not started: {exc}")
    else:
        if resume:
            st.info(f"Resuming {resume} with its own settings ({config.epochs} epochs, "
                    f"{config.image_size} px, seed {config.seed}); the form's other settings "
                    f"are not used.")


@st.fragment(run_every=2.0)
def progress_panel():
    state = jobs.state
    if state is None:
        st.info("No training run yet on this server.")
        return
    st.subheader(f"Run: {os.path.basename(state.config.out)} — {state.status}")
    if state.status == "decoding":
        st.progress(state.step / max(1, state.steps), text=f"{state.phase_message} "
                    f"({state.step}/{state.steps})")
    else:
        eta = f" · ETA {state.eta_s / 60:.1f} min" if state.eta_s else ""
        loss = f" · loss {state.train_loss:.4f}" if state.train_loss is not None else ""
        st.progress(state.fraction, text=f"epoch {state.epoch}/{state.epochs}, step "
                    f"{state.step}/{state.steps}{loss}{eta}")
    if state.device:
        st.caption(f"Device: {state.device}")
    if state.running:
        if st.button("Stop", key="stop_training"):
            jobs.stop()
            st.toast("Stopping after the current step…")
    if state.error:
        st.error(f"Training failed: {state.error}")
    if state.history:
        history = pd.DataFrame(state.history)
        left, right = st.columns(2)
        left.altair_chart(history_chart(history, [c for c in ("train_loss", "val_loss")
                                                  if c in history], "MSE"), width="stretch")
        if "val_rmse" in history:
            right.altair_chart(history_chart(history, ["val_rmse"], "validation RMSE"),
                               width="stretch")
        st.dataframe(history[[c for c in ("epoch", "train_loss", "val_rmse", "lr", "epoch_s",
                                          "train_images_per_s") if c in history]],
                     hide_index=True, width="stretch")
    result = state.result
    if result is not None and result.best_path:
        st.success(f"Best checkpoint: {registry.model_label(result.best_path)}. Review it under "
                   "**Models** below before making it the app's model.")


def review_table(review: registry.Review) -> pd.DataFrame:
    def row(name, score):
        return {"model": name, "held-out RMSE": score.rmse, "mean baseline": score.baseline,
                "scored on": score.what}
    return pd.DataFrame([row("candidate", review.candidate), row("app's model now",
                                                                 review.current)])


def models_panel():
    """Activate a checkpoint for every visitor (after a review), or restore the shipped one."""
    st.subheader("Models")
    active = registry.active_model_path()
    st.markdown(f"Every visitor now gets: **{registry.model_label(active)}**")
    candidates = [p for p in registry.available_checkpoints() if p != active]
    if candidates:
        path = st.selectbox("Candidate", candidates, format_func=registry.model_label,
                            key="activate_candidate")
        try:
            review = registry.activation_review(get_model(path), get_model(active))
        except (CheckpointError, OSError) as exc:
            st.error(f"That checkpoint cannot be used: {exc}")
        else:
            st.dataframe(review_table(review), hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.4f")
                                        for c in ("held-out RMSE", "mean baseline")})
            st.caption("Lower is better. The two RMSEs may come from different galaxies; the "
                       "baseline predicts every galaxy's answers as the training mean.")
            confirmed = True
            for problem in review.problems:
                st.warning(f"Careful: {problem}.")
            if review.problems:
                confirmed = st.checkbox("I have read this and want to activate it anyway",
                                        key="activate_confirm")
            if st.button("Activate for every visitor", key="activate", disabled=not confirmed):
                try:
                    registry.set_active_model(path, by=who(), confirm=confirmed)
                except (CheckpointError, registry.ActivationRefused) as exc:
                    st.error(str(exc))
                else:
                    st.toast(f"{registry.model_label(path)} is now the app's model")
                    st.rerun()
    if active != paths.DEFAULT_MODEL:
        if st.button("Restore the shipped model", key="restore_shipped"):
            registry.restore_shipped(by=who())
            st.rerun()
    history = registry.activation_log()
    if history:
        with st.expander(f"Activation log ({len(history)})"):
            st.dataframe(pd.DataFrame(history[::-1])[["time", "action", "model", "previous",
                                                      "by"]], hide_index=True, width="stretch")


progress_panel()
models_panel()
