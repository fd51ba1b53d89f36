"""Train (maintainers): the CLI's training config as a form, run in the background."""

import datetime as dt
import os

import pandas as pd
import streamlit as st

from galaxy_core import paths, registry
from galaxy_core.access import PASSWORD_ENV, training_access
from galaxy_core.checkpoint import CheckpointError
from galaxy_core.config import AUGMENTS, HEADS, SCHEDULES, TrainConfig
from galaxy_core.device import describe, select_device
from galaxy_core.jobs import JobBusy
from pages.common import training_jobs

st.title("🛠️ Train a model")


def configured_password():
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    try:
        return st.secrets.get("admin_password")
    except Exception:  # no secrets file at all
        return None


configured = configured_password()
entered = st.session_state.get("admin_password_entered")
allowed, reason = training_access(st.get_option("server.address"), configured, entered)
if not allowed:
    st.warning(f"Training is locked: {reason}.")
    if configured:
        with st.form("unlock"):
            password = st.text_input("Admin password", type="password")
            if st.form_submit_button("Unlock"):
                st.session_state["admin_password_entered"] = password
                st.rerun()
    st.stop()
st.caption(f"Unlocked: {reason}. Runs on {describe(select_device('auto'))}.")

jobs = training_jobs()

with st.form("train_config"):
    st.markdown("**Data** (Kaggle layout: labels CSV + folder of <GalaxyID>.jpg)")
    data_left, data_right = st.columns(2)
    labels = data_left.text_input("Labels CSV", paths.SAMPLE_LABELS, key="train_labels")
    images = data_right.text_input("Image folder", paths.SAMPLE_IMAGES, key="train_images")
    c1, c2, c3, c4 = st.columns(4)
    subset = c1.number_input("Subset size (0 = all)", 0, 10_000_000, 0)
    val_fraction = c2.slider("Validation fraction", 0.0, 0.5, 0.2, 0.05)
    epochs = c3.number_input("Epochs", 1, 1000, 10, key="train_epochs")
    batch_size = c4.number_input("Batch size", 1, 1024, 32, key="train_batch_size")
    c5, c6, c7, c8 = st.columns(4)
    lr = c5.number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.5f")
    image_size = c6.number_input("Image size (px)", 16, 1024, 96, key="train_image_size")
    crop_fraction = c7.slider("Centre crop (fraction of frame)", 0.1, 1.0, 0.5, 0.05)
    schedule = c8.selectbox("LR schedule", SCHEDULES, index=SCHEDULES.index("onecycle"))
    c9, c10, c11, c12 = st.columns(4)
    head = c9.selectbox("Output head", HEADS, index=HEADS.index("tree"))
    augment = c10.selectbox("Augmentation", AUGMENTS, index=AUGMENTS.index("full"))
    pretrained = c11.checkbox("ImageNet weights (must be in the torch cache)")
    freeze_backbone = c12.checkbox("Freeze backbone")
    resumable = [p.replace("best.pt", "last.pt") for p in registry.available_checkpoints()
                 if os.path.isfile(p.replace("best.pt", "last.pt")) and p.endswith("best.pt")]
    resume = st.selectbox("Resume from", [""] + resumable,
                          format_func=lambda p: "(start fresh)" if not p else p)
    submitted = st.form_submit_button("Start training", type="primary",
                                      disabled=bool(jobs.state and jobs.state.running))

if submitted:
    out = os.path.join(paths.RUNS_DIR, dt.datetime.now().strftime("run-%Y%m%d-%H%M%S"))
    try:
        config = TrainConfig(images=images, labels=labels, out=out, epochs=int(epochs),
                             batch_size=int(batch_size), lr=float(lr), subset=int(subset),
                             val_fraction=float(val_fraction), image_size=int(image_size),
                             crop_fraction=float(crop_fraction), schedule=schedule, head=head,
                             augment=augment, pretrained=pretrained,
                             freeze_backbone=freeze_backbone, resume=resume, workers=0)
        jobs.start(config)
    except (ValueError, JobBusy) as exc:
        st.error(str(exc))


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
        chart = history.set_index("epoch")[[c for c in ("train_loss", "val_loss")
                                            if c in history]]
        left, right = st.columns(2)
        left.line_chart(chart, x_label="epoch", y_label="MSE")
        if "val_rmse" in history:
            right.line_chart(history.set_index("epoch")[["val_rmse"]], x_label="epoch",
                             y_label="validation RMSE")
        st.dataframe(history[[c for c in ("epoch", "train_loss", "val_rmse", "lr", "epoch_s",
                                          "train_images_per_s") if c in history]],
                     hide_index=True, width="stretch")
    result = state.result
    if result is not None and result.best_path:
        st.success(f"Best checkpoint: {result.best_path}")
        if st.button("Make it the app's active model", key="activate"):
            try:
                registry.set_active_model(result.best_path)
            except CheckpointError as exc:
                st.error(str(exc))
            else:
                # forget this session's pick so the sidebar follows the new active model
                for key in ("model_path", "model_picker"):
                    st.session_state.pop(key, None)
                st.rerun()


progress_panel()
