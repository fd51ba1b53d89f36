"""Dataset browser: thumbnails of a labelled set, filtered and sorted by any answer column."""

import logging
import math
import os

import numpy as np
import pandas as pd
import streamlit as st

from galaxy_core.data import DataError, image_path
from galaxy_core.datasets import DatasetError, resolve_under
from galaxy_core.images import ImageError
from galaxy_core.predict import predict_image
from galaxy_core.schema import ANSWER_BY_COLUMN, COLUMN_INDEX, QUESTIONS, answer_name
from galaxy_core.registry import training_galaxies
from pages.common import (AGREEMENT_SIZE, active_model, agreement_chart, configured_datasets,
                          dataset_picker, dataset_predictions, is_admin, read_labels_cached,
                          thumb)

log = logging.getLogger("galaxy_app")

PAGE_SIZE = 24
THUMB_WIDTH = 150  # px: 6-8 a row on a desktop, 2 on a phone
MAX_COMPARED = 1000  # galaxies in the whole-dataset comparison
OPERATORS = {">": lambda s, v: s > v, ">=": lambda s, v: s >= v, "<": lambda s, v: s < v,
             "<=": lambda s, v: s <= v}

st.title("🗂️ Dataset browser")
dataset = dataset_picker("Dataset", key="browse_dataset")
labels_path, images_dir = dataset.labels, dataset.images
if is_admin():
    with st.expander("Another folder inside the dataset folders (maintainers)"):
        st.caption("A labels CSV and an image folder in the Kaggle layout (<GalaxyID>.jpg), "
                   "inside one of the configured dataset folders.")
        typed_labels = st.text_input("Labels CSV", "", key="browse_labels")
        typed_images = st.text_input("Image folder", "", key="browse_images")
        try:
            if typed_labels:
                labels_path = resolve_under(configured_datasets(), typed_labels, "file")
            if typed_images:
                images_dir = resolve_under(configured_datasets(), typed_images, "dir")
        except DatasetError as exc:
            st.error(f"{exc}.")
            st.stop()

try:
    frame = read_labels_cached(labels_path)
    if not os.path.isdir(images_dir):
        raise DataError("its image folder is missing")
except DataError as exc:
    if is_admin():
        st.error(f"{exc}.")
    else:
        log.warning("dataset %r cannot be read: %s", dataset.name, exc)
        st.error(f"The dataset {dataset.name!r} cannot be read right now; the maintainers "
                 "have been told in the server log.")
    st.stop()

columns = [c for c in frame.columns if c != "GalaxyID"]
filter_col, op_col, value_col, sort_col, order_col = st.columns([3, 1, 2, 3, 2])
filter_by = filter_col.selectbox("Filter by", ["(none)"] + columns,
                                 format_func=lambda c: c if c == "(none)" else answer_name(c))
operator = op_col.selectbox("is", list(OPERATORS), disabled=filter_by == "(none)")
threshold = value_col.number_input("value", 0.0, 1.0, 0.5, 0.05, disabled=filter_by == "(none)")
sort_by = sort_col.selectbox("Sort by", ["GalaxyID"] + columns,
                             format_func=lambda c: c if c == "GalaxyID" else answer_name(c))
descending = order_col.toggle("Descending", value=sort_by != "GalaxyID")

view = frame
if filter_by != "(none)":
    view = view[OPERATORS[operator](view[filter_by], threshold)]
view = view.sort_values(sort_by, ascending=not descending, kind="stable")
pages = max(1, math.ceil(len(view) / PAGE_SIZE))
page = st.number_input(f"Page (of {pages}; {len(view)} of {len(frame)} galaxies match)", 1,
                       pages, 1)
shown = view.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
if shown.empty:
    st.info("No galaxy matches the filter.")
    st.stop()

# the thumbnails' captions carry what the page is sorted by (and filtered by, if other)
caption_columns = [c for c in dict.fromkeys([sort_by, filter_by]) if c in columns]
picked = st.session_state.get("browse_pick")
grid = st.container(horizontal=True, gap="small")
for _, galaxy in shown.iterrows():
    galaxy_id = int(galaxy["GalaxyID"])
    with grid.container(width=THUMB_WIDTH, gap=None):
        image = thumb(image_path(images_dir, galaxy_id), 128, 0.6)
        if image is None:
            st.caption(f"{galaxy_id}: no readable image")
            continue
        st.image(image, width="stretch")
        label = " · ".join([str(galaxy_id)] + [f"{ANSWER_BY_COLUMN[c].label} {galaxy[c]:.2f}"
                                                for c in caption_columns])
        st.button(label, key=f"browse_thumb_{galaxy_id}", width="stretch",
                  type="primary" if picked == galaxy_id else "secondary",
                  on_click=lambda g=galaxy_id: st.session_state.update(browse_pick=g),
                  help="Inspect this galaxy below")

ids_here = [int(g) for g in shown["GalaxyID"]]
if picked not in ids_here:
    picked = ids_here[0]
st.divider()
galaxy_id = picked
row = frame[frame["GalaxyID"] == galaxy_id].iloc[0]
loaded = active_model()
st.subheader(f"Galaxy {galaxy_id}")
if st.button("More like this", key="browse_similar", help="Galaxies of this dataset that the "
             "model sees as most alike"):
    st.session_state["similar_query"] = {"dataset": dataset.name, "galaxy_id": galaxy_id}
    st.switch_page("pages/similar.py")
if loaded is not None:
    seen = training_galaxies(loaded)
    if seen is None:
        st.caption("This model does not record which galaxies it was trained on, so this may "
                   "be a galaxy it learned from; the Model card gives held-out accuracy.")
    elif galaxy_id in seen:
        st.caption("This galaxy was in the model's training data: the comparison below shows "
                   "how well the model fits what it learned from, not how it does on new "
                   "galaxies (the Model card gives held-out accuracy).")
    else:
        st.caption("This galaxy was not in the model's training data: the comparison below is "
                   "a fair test.")
image_col, table_col = st.columns([1, 2])
path = image_path(images_dir, galaxy_id)
with image_col:
    big = thumb(path, 320, loaded.preprocess.crop_fraction if loaded else 1.0)
    if big is not None:
        st.image(big, caption=f"{galaxy_id}: the region the model sees", width="stretch")
with table_col:
    preds = None
    if loaded is not None:
        try:
            preds = predict_image(loaded, path)
        except ImageError as exc:
            st.error(str(exc))
    learned = set(loaded.trained_columns) if loaded is not None else set()
    hidden = []
    for question in QUESTIONS:
        known = [a for a in question.answers if a.column in columns or a.column in learned]
        if not known:
            hidden.append(f"Q{question.number} {question.topic}")
            continue
        st.markdown(f"**Q{question.number} {question.topic}** — {question.text}")
        st.dataframe(pd.DataFrame([{
            "answer": answer.label,
            "volunteers": row.get(answer.column, None),
            # an answer the model never learned has no prediction to show
            "model": (round(float(preds[COLUMN_INDEX[answer.column]]), 4)
                      if preds is not None and answer.column in learned else None),
        } for answer in question.answers]), hide_index=True, width="stretch", placeholder="—")
    st.caption("— : no volunteer fraction in this dataset, or an answer the model never "
               "learned." + (f" Neither labelled here nor learned: {', '.join(hidden)}."
                             if hidden else ""))

st.divider()
st.subheader("The whole dataset: model against volunteers")
learned_here = [c for c in columns if loaded is not None and c in loaded.trained_columns]
if loaded is None or not learned_here:
    st.info("The model in use learned none of this dataset's answer columns.")
    st.stop()
ids = frame["GalaxyID"].to_numpy()
if len(ids) > MAX_COMPARED:  # a visitor may not set the server predicting 60,000 galaxies
    ids = np.sort(np.random.default_rng(0).choice(ids, MAX_COMPARED, replace=False))
st.caption(f"Each dot is a galaxy: the model's prediction (one view) against the volunteers' "
           f"fraction, per learned answer; on the diagonal they agree. "
           f"{'All' if len(ids) == len(frame) else f'A fixed random {len(ids)} of the'} "
           f"{len(frame)} galaxies.")
if st.toggle("Compare the model with the volunteers", key="browse_compare", value=len(ids) <= 100,
             help="Predicts every galaxy shown in the chart (about 30 ms each here)"):
    preds_all = dataset_predictions(loaded, images_dir, tuple(int(g) for g in ids))
    merged = preds_all.merge(frame, on="GalaxyID", suffixes=("_model", ""))
    panels = st.container(horizontal=True, gap="small")  # wraps: 2 a row on a phone
    for column in learned_here:
        with panels.container(width=AGREEMENT_SIZE["width"], gap=None):
            st.altair_chart(agreement_chart(merged, column), **AGREEMENT_SIZE)
