"""What every page shares: the Streamlit cache wrappers, the active model, and charts.

This is the only module that owns ``st.cache_resource`` / ``st.cache_data``. Models load once
per checkpoint file (the cache key includes its modification time and size, so a retrained
file is reloaded) and are shared by all sessions; ``LoadedModel.lock`` serialises their use.
"""

from __future__ import annotations

import logging
import os

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from galaxy_core import paths, registry
from galaxy_core.checkpoint import CheckpointError, LoadedModel, load_checkpoint
from galaxy_core.config import Preprocess
from galaxy_core.data import DataError, image_path, read_labels
from galaxy_core.images import ImageError, MAX_BYTES, display_crop
from galaxy_core.jobs import TrainingJobs
from galaxy_core.schema import ANSWER_COLUMNS, QUESTION_OF_COLUMN, QUESTIONS

log = logging.getLogger("galaxy_app")

UPLOAD_TYPES = ["jpg", "jpeg", "png", "tif", "tiff", "bmp", "webp"]
UPLOAD_LIMIT_TEXT = (f"JPEG, PNG, TIFF, BMP or WebP, up to {MAX_BYTES // (1024 * 1024)} MB and "
                     f"40 megapixels each")
MODEL_KEY = "model_path"


# ---- cached resources -------------------------------------------------------------------

@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def _load_model(path: str, mtime: float, size: int) -> LoadedModel:
    return load_checkpoint(path)


def get_model(path: str) -> LoadedModel:
    stat = os.stat(path)
    return _load_model(os.path.abspath(path), stat.st_mtime, stat.st_size)


@st.cache_resource
def training_jobs() -> TrainingJobs:
    """One job manager per server process: one training run at a time, for everyone."""
    return TrainingJobs()


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail(path: str, mtime: float, size: int, crop_fraction: float) -> np.ndarray | None:
    try:
        return display_crop(path, Preprocess(crop_fraction=crop_fraction), size)
    except ImageError:
        return None


@st.cache_data(max_entries=8, show_spinner="Reading labels…")
def labels_frame(path: str, mtime: float) -> pd.DataFrame:
    table = read_labels(path)
    frame = pd.DataFrame(table.targets, columns=list(ANSWER_COLUMNS))[list(table.columns)]
    frame.insert(0, "GalaxyID", table.galaxy_ids)
    return frame


def thumb(path: str, size: int = 160, crop_fraction: float = 1.0):
    try:
        return thumbnail(path, os.path.getmtime(path), size, crop_fraction)
    except OSError:
        return None


def read_labels_cached(path: str) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise DataError(f"labels file not found: {path}")
    return labels_frame(path, os.path.getmtime(path))


# ---- the active model -------------------------------------------------------------------

def active_model() -> LoadedModel | None:
    """The model this session uses (the sidebar's choice); None with an error shown."""
    path = st.session_state.get(MODEL_KEY) or registry.active_model_path()
    try:
        return get_model(path)
    except (CheckpointError, OSError) as exc:
        st.error(f"The selected model cannot be used: {exc}")
        return None


def model_sidebar() -> None:
    """The model picker and summary in the sidebar, shared by every page."""
    options = registry.available_checkpoints()
    active = registry.active_model_path()
    if active not in options and os.path.isfile(active):
        options.insert(0, active)
    with st.sidebar:
        st.subheader("Model")
        if not options:
            st.error("No model found. Train one on the Train page or restore "
                     f"{os.path.relpath(paths.DEFAULT_MODEL, paths.PROJECT_ROOT)}.")
            return
        current = st.session_state.get(MODEL_KEY)
        index = options.index(current) if current in options else \
            (options.index(active) if active in options else 0)
        choice = st.selectbox("Active checkpoint", options, index=index,
                              format_func=registry.model_label, key="model_picker")
        st.session_state[MODEL_KEY] = choice
        loaded = active_model()
        if loaded is None:
            return
        info = registry.describe_model(loaded)
        st.caption(f"ResNet18, {info['head']} head, {info['image_size']} px input · trained "
                   f"{info['created'][:10]} on {info['data']} · {info['accuracy']}")
        if info["not_learned_questions"]:
            st.caption("Learned: " + ", ".join(info["learned_questions"]) + ". **Not learned** "
                       "(no training targets): " + ", ".join(info["not_learned_questions"]) + ".")


# ---- charts and tables ------------------------------------------------------------------

def probabilities_frame(preds, trained_columns) -> pd.DataFrame:
    """One row per answer: question, answer, probability, learned or not."""
    rows = []
    for column, value in zip(ANSWER_COLUMNS, preds):
        question = QUESTION_OF_COLUMN[column]
        answer = next(a for a in question.answers if a.column == column)
        rows.append({"question": f"Q{question.number} {question.topic}", "answer": answer.label,
                     "column": column, "probability": float(value),
                     "learned": column in trained_columns})
    return pd.DataFrame(rows)


def probability_chart(frame: pd.DataFrame) -> alt.Chart:
    """Horizontal bars grouped by question; answers the model never learned are greyed out."""
    data = frame.assign(
        label=frame["question"].str.split(" ").str[0] + " · " + frame["answer"],
        status=np.where(frame["learned"], "learned", "not learned"),
    )
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
        y=alt.Y("label:N", sort=list(data["label"]), title=None,
                axis=alt.Axis(labelLimit=260, labelOverlap=False)),
        color=alt.condition(alt.datum.status == "learned", alt.Color(
            "question:N", legend=None, sort=[f"Q{q.number} {q.topic}" for q in QUESTIONS]),
            alt.value("#d0d0d0")),
        tooltip=["question", "answer", "column", alt.Tooltip("probability:Q", format=".3f"),
                 "status"],
    ).properties(height=19 * len(data))


def show_error(exc: Exception, hint: str = "") -> None:
    st.error(f"{exc}{' — ' + hint if hint else ''}")


def sample_paths() -> list[str]:
    """Shipped sample galaxies, in GalaxyID order."""
    try:
        frame = read_labels_cached(paths.SAMPLE_LABELS)
    except DataError:
        return []
    return [image_path(paths.SAMPLE_IMAGES, g) for g in frame["GalaxyID"]
            if os.path.isfile(image_path(paths.SAMPLE_IMAGES, g))]
