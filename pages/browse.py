"""Dataset browser: thumbnails of a labelled set, filtered and sorted by any answer column."""

import logging
import math
import os

import pandas as pd
import streamlit as st

from galaxy_core.data import DataError, image_path
from galaxy_core.datasets import DatasetError, resolve_under
from galaxy_core.images import ImageError
from galaxy_core.predict import predict_image
from galaxy_core.registry import describe_model
from galaxy_core.schema import COLUMN_INDEX, QUESTIONS, answer_name
from pages.common import (active_model, configured_datasets, dataset_picker, is_admin,
                          read_labels_cached, thumb)

log = logging.getLogger("galaxy_app")

PAGE_SIZE = 24
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

grid = st.columns(6)
for i, galaxy_id in enumerate(shown["GalaxyID"]):
    with grid[i % 6]:
        image = thumb(image_path(images_dir, galaxy_id), 128, 0.6)
        if image is None:
            st.caption(f"{galaxy_id}: no readable image")
        else:
            caption = str(galaxy_id)
            if filter_by != "(none)" or sort_by != "GalaxyID":
                key = filter_by if filter_by != "(none)" else sort_by
                caption += f" · {key} {shown.loc[shown['GalaxyID'] == galaxy_id, key].iloc[0]:.2f}"
            st.image(image, caption=caption, width="stretch")

if shown.empty:
    st.info("No galaxy matches the filter.")
    st.stop()

st.divider()
galaxy_id = st.selectbox("Inspect a galaxy on this page", list(shown["GalaxyID"]))
row = frame[frame["GalaxyID"] == galaxy_id].iloc[0]
loaded = active_model()
image_col, table_col = st.columns([1, 2])
path = image_path(images_dir, galaxy_id)
with image_col:
    big = thumb(path, 320, loaded.preprocess.crop_fraction if loaded else 1.0)
    if big is not None:
        st.image(big, caption=f"{galaxy_id}", width="stretch")
with table_col:
    preds = None
    if loaded is not None:
        try:
            preds = predict_image(loaded, path)
        except ImageError as exc:
            st.error(str(exc))
    for question in QUESTIONS:
        rows = []
        for answer in question.answers:
            rows.append({
                "answer": f"{answer.label} ({answer.column})",
                "volunteers": row.get(answer.column, float("nan")),
                "model": (None if preds is None
                          else round(float(preds[COLUMN_INDEX[answer.column]]), 4)),
                "learned": bool(loaded and answer.column in loaded.trained_columns),
            })
        st.markdown(f"**Q{question.number} {question.topic}** — {question.text}")
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", placeholder="—")
if loaded is not None and describe_model(loaded)["trained_on_all"]:
    st.caption("The active model was trained on every galaxy of its labels file (for the "
               "shipped model: all 4000 of the shared sample, the 40 shipped samples included), "
               "so for those galaxies this comparison shows how well it fits its training data, "
               "not how it does on galaxies it never saw; the Model card gives held-out "
               "accuracy.")
