"""Grad-CAM and four related class activation maps: which pixels drive one answer. Built for
live classroom demos."""

import io
import os

import numpy as np
import streamlit as st
from PIL import Image

from galaxy_core.augment import TTA_VIEWS
from galaxy_core.explain import (LAYERS, METHOD_NAMES, METHODS, CamError, explain_image,
                                 heatmap_image, overlay)
from galaxy_core.images import ImageError, display_crop
from galaxy_core.predict import predict_image
from galaxy_core.schema import ANSWER_COLUMNS, answer_name
from galaxy_core.verdict import top_answer
from pages.common import UPLOAD_LIMIT_TEXT, active_model, checked_uploads, sample_paths

st.title("🔥 Grad-CAM: where does the model look?")
loaded = active_model()
if loaded is None:
    st.stop()

samples = sample_paths()
names = {os.path.splitext(os.path.basename(p))[0]: p for p in samples}
source_col, settings_col = st.columns([1, 1])
with source_col:
    uploaded = st.file_uploader("Upload a galaxy", help=UPLOAD_LIMIT_TEXT)
    upload = (checked_uploads([uploaded]) or [None])[0] if uploaded is not None else None
    sample = st.selectbox("…or a shipped sample", list(names), index=0 if names else None,
                          disabled=upload is not None or not names)
    tta = st.toggle(f"Average over {TTA_VIEWS} rotations/flips", value=True,
                    help=f"As on the Classify page: the probabilities are the mean over the "
                         f"{TTA_VIEWS} flips and right-angle turns of the image, and the heatmap "
                         f"is the mean of their {TTA_VIEWS} heatmaps, each turned back first. A "
                         f"galaxy has no orientation, so neither should what drives an answer; "
                         f"it also smooths the dotted look of HiResCAM and LayerCAM on earlier "
                         f"layers. Off: one view, the map of the image as it is.")
if upload is not None:
    source, title = upload.getvalue(), upload.name
elif sample:
    source, title = names[sample], f"{sample}.jpg"
else:
    st.info("Upload an image to explain.")
    st.stop()

try:
    preds = predict_image(loaded, source, tta=tta, name=title)
except ImageError as exc:
    st.error(f"{exc}. Try another file.")
    st.stop()


def answer_label(column: str) -> str:
    learned = "" if column in loaded.trained_columns else "  · not learned"
    return f"{answer_name(column)} — {preds[ANSWER_COLUMNS.index(column)]:.2f}{learned}"


default_answer = top_answer(preds, loaded.trained_columns)
with settings_col:
    answer = st.selectbox("Answer to explain (grouped by question; default: top answer)",
                          ANSWER_COLUMNS, index=ANSWER_COLUMNS.index(default_answer),
                          format_func=answer_label, key=f"cam_answer_{title}")
    method = st.radio("Method", list(METHOD_NAMES), format_func=METHOD_NAMES.get,
                      horizontal=True,
                      help="Grad-CAM: the classic, one weight per feature map. Grad-CAM++: "
                           "better when several regions (arms, a companion) drive the answer. "
                           "XGrad-CAM: weights scaled by how active each map is. HiResCAM: "
                           "pixel by pixel, each location by its own gradient. LayerCAM: "
                           "pixel by pixel, positive gradients only. On layer2/layer3 the "
                           "pixel-by-pixel two stay on the galaxy where Grad-CAM may not; one "
                           "view of them looks dotted (the stride-2 convolutions that follow "
                           "send gradients to every second location), the 8-view average not.")
    layer = st.selectbox("Layer", LAYERS, help="layer4 = the last residual block (coarsest, "
                         "most semantic); earlier layers show finer but less specific detail")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05)

if answer not in loaded.trained_columns:
    st.warning(f"{answer_name(answer)} was never learned by this model (no training targets): "
               f"its heatmap explains an untrained output and means nothing.")

try:
    result = explain_image(loaded, source, answer, method, layer, name=title, tta=tta)
except (CamError, ImageError) as exc:
    st.error(str(exc))
    st.stop()

shown = display_crop(source, loaded.preprocess)
blended = overlay(shown, result.heatmap, opacity)
st.markdown(f"**{METHOD_NAMES[method]}** of *{answer_name(answer)}* — predicted probability "
            f"**{result.probability:.3f}** · layer `{layer}`"
            + (f" · averaged over {result.views} views" if result.views > 1 else ""))
original_col, heat_col, overlay_col = st.columns(3)
original_col.image(shown, caption="what the model sees", width="stretch")
heat_col.image(heatmap_image(result.heatmap, shown.shape[0]), caption="heatmap",
               width="stretch")
overlay_col.image(blended, caption="overlay", width="stretch")

if st.toggle("Compare the five methods side by side", value=False,
             help="For teaching: the same answer, layer and views, explained by each method."):
    for column, other in zip(st.columns(len(METHODS)), METHODS):
        try:
            compared = result if other == method else explain_image(
                loaded, source, answer, other, layer, name=title, tta=tta)
        except (CamError, ImageError) as exc:
            column.error(str(exc))
            continue
        column.image(overlay(shown, compared.heatmap, opacity), caption=METHOD_NAMES[other],
                     width="stretch")

buffer = io.BytesIO()
Image.fromarray(np.asarray(blended)).save(buffer, format="PNG")
st.download_button("Download overlay (PNG)", buffer.getvalue(),
                   file_name=f"gradcam_{os.path.splitext(title)[0]}_{answer}.png",
                   mime="image/png")
