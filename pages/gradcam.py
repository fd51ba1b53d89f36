"""Grad-CAM and four related class activation maps: which pixels drive one answer, why the
verdict went the way it did, and how far a map can be trusted. Built for live classroom demos:
the image is seen once (pages.common.explained_image), so a new answer, method or layer costs
at most one backward pass and an opacity step only a re-blend."""

import os

import streamlit as st

from galaxy_core.augment import TTA_VIEWS
from galaxy_core.explain import (DEFAULT_LAYER, DEFAULT_METHOD, LAYERS, METHOD_NAMES, METHODS,
                                 CamError, colorbar_image, heatmap_image, overlay, png_bytes,
                                 what_red_means)
from galaxy_core.faithfulness import MIN_PROBABILITY, against_centre, beating_sentence
from galaxy_core.framing import FRAMING_BY_DEFAULT, WIDE_ZOOM, caption_note
from galaxy_core.images import ImageError
from galaxy_core.paths import DEFAULT_MODEL
from galaxy_core.schema import ANSWER_COLUMNS, answer_name
from galaxy_core.verdict import walk_tree
from pages.common import (UPLOAD_LIMIT_MB, UPLOAD_LIMIT_TEXT, active_model, checked_uploads,
                          explained_image, faithfulness_report, image_flags, map_scores,
                          sample_choices, sample_title)

METHOD_HELP = ("Grad-CAM: the classic, one weight per feature map. Grad-CAM++: better when "
               "several regions (arms, a companion) drive the answer. XGrad-CAM: weights scaled "
               "by how active each map is. HiResCAM: pixel by pixel, each location by its own "
               "gradient. LayerCAM: pixel by pixel, positive gradients only. On layer4 the first "
               "three and HiResCAM draw the same map (the gradient there is the same at every "
               "location). One view of the pixel-by-pixel two looks dotted on layer2/layer3 (the "
               "stride-2 convolutions that follow send gradients to every second location); the "
               "8-view average does not.")


def legend(answer: str) -> None:
    """The colour bar and the sentence saying what red means, for maps of ``answer``."""
    st.image(colorbar_image(), width="stretch")
    st.caption("0 (blue) ← scale of the map → 1 (red)")
    st.markdown(what_red_means(answer))


st.title("🔥 Grad-CAM: where does the model look?")
loaded = active_model()
if loaded is None:
    st.stop()

names = sample_choices()
source_col, settings_col = st.columns([1, 1])
with source_col:
    uploaded = st.file_uploader("Upload a galaxy", help=UPLOAD_LIMIT_TEXT,
                                max_upload_size=UPLOAD_LIMIT_MB)
    upload = (checked_uploads([uploaded]) or [None])[0] if uploaded is not None else None
    sample = st.selectbox("…or a shipped sample", list(names), index=0 if names else None,
                          disabled=upload is not None or not names)
    tta = st.toggle(f"Average over {TTA_VIEWS} rotations/flips", value=True,
                    help=f"As on the Classify page (there, half the views of a galaxy large "
                         f"in its frame also look {WIDE_ZOOM:g}x wider; here all are of the "
                         f"region shown): "
                         f"the probabilities are the mean over the "
                         f"{TTA_VIEWS} flips and right-angle turns of the image, and the heatmap "
                         f"is the mean of their {TTA_VIEWS} heatmaps, each turned back first. A "
                         f"galaxy has no orientation, so neither should what drives an answer; "
                         f"it also smooths the dotted look of HiResCAM and LayerCAM on earlier "
                         f"layers. Off: one view, the map of the image as it is.")
    framed = st.toggle("Frame the galaxy automatically", value=FRAMING_BY_DEFAULT,
                       key="gradcam_framing",
                       help="As on the Classify page: a galaxy far smaller in its frame than "
                            "the training galaxies (a wide field) is zoomed in on first, and one "
                            "that leaves the middle of the image empty is centred, so the map "
                            "explains what the model would classify. Other images are left as "
                            "they are.")
if uploaded is not None and upload is None:  # refused, and said why above: no sample instead
    st.stop()
if upload is not None:
    source, title = upload.getvalue(), upload.name
elif sample:
    source, title = names[sample], sample_title(sample)
else:
    st.info("Upload an image to explain.")
    st.stop()

try:
    explained = explained_image(loaded, source, title, tta, framed)
except ImageError as exc:
    st.error(f"{exc}. Try another file.")
    st.stop()
if upload is not None:  # the shipped samples are training cut-outs
    for flag in image_flags(source, title, loaded.preprocess.crop_fraction, explained.frame):
        st.warning(f"Unlike the training images: {flag.message}. The model has seen nothing "
                   f"like this, so its answers, and the maps that explain them, say little.")
preds = explained.preds
report = faithfulness_report()
measured = ""
if report is not None:
    whose = ("" if os.path.abspath(loaded.path) == os.path.abspath(DEFAULT_MODEL)
             else " (the shipped model, not the one in use)")
    measured = " " + beating_sentence(report) + whose


def answer_label(column: str) -> str:
    learned = "" if column in loaded.trained_columns else "  · not learned"
    return f"{answer_name(column)} — {preds[ANSWER_COLUMNS.index(column)]:.2f}{learned}"


with settings_col:
    answer = st.selectbox("Answer to explain (default: the verdict's first answer)",
                          ANSWER_COLUMNS, index=ANSWER_COLUMNS.index(explained.default_answer()),
                          format_func=answer_label, key=f"cam_answer_{title}")
    method = st.radio("Method", list(METHOD_NAMES), index=METHODS.index(DEFAULT_METHOD),
                      format_func=METHOD_NAMES.get, horizontal=True,
                      help=METHOD_HELP + f" Default {METHOD_NAMES[DEFAULT_METHOD]}: with the "
                           f"default layer, what the faithfulness measurement favours."
                           + measured)
    layer = st.selectbox("Layer", LAYERS, index=LAYERS.index(DEFAULT_LAYER),
                         help=f"layer4 = the last residual block (5x5 at this model's input: "
                              f"coarse, much the same map for every galaxy); earlier layers show "
                              f"finer detail. Default {DEFAULT_LAYER}: with the default method, "
                              f"what the faithfulness measurement favours.{measured}")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05)

if answer not in loaded.trained_columns:
    st.warning(f"{answer_name(answer)} was never learned by this model (no training targets): "
               f"its heatmap explains an untrained output and means nothing.")

try:
    heatmap = explained.heatmap(answer, method, layer)
except CamError as exc:
    st.error(str(exc))
    st.stop()

shown = explained.display
blended = overlay(shown, heatmap, opacity)
st.markdown(f"**{METHOD_NAMES[method]}** of *{answer_name(answer)}* — predicted probability "
            f"**{explained.probability(answer):.3f}** · layer `{layer}`"
            + (f" · averaged over {explained.views} views" if explained.views > 1 else ""))
original_col, heat_col, overlay_col = st.columns(3)
original_col.image(shown, caption=f"what the model sees"
                           f"{caption_note(explained.frame, seen='maps')}",
                   width="stretch")
heat_col.image(heatmap_image(heatmap, shown.shape[0]), caption="heatmap", width="stretch")
overlay_col.image(blended, caption="overlay", width="stretch")
legend_col, score_col = st.columns(2)
with legend_col:
    legend(answer)
if st.toggle("Compare the five methods side by side", value=False,
             help="For teaching: the same answer, layer and views, explained by each method."):
    st.markdown(f"**The five methods** for *{answer_name(answer)}*, layer `{layer}`")
    for column, other in zip(st.columns(len(METHODS)), METHODS):
        column.image(overlay(shown, explained.heatmap(answer, other, layer), opacity),
                     caption=METHOD_NAMES[other], width="stretch")
    st.caption(what_red_means(answer))
verdict = walk_tree(preds, loaded.trained_columns)
st.subheader("Why this verdict?")
st.markdown(f"**Verdict:** {verdict.text}. One map per question the verdict walked, each for "
            f"the answer it took there ({METHOD_NAMES[method]}, `{layer}`): red marks what "
            f"raised that answer's probability.")
for column, (step, step_map) in zip(st.columns(max(1, len(verdict.steps))),
                                   explained.verdict_maps(method, layer)):
    column.image(overlay(shown, step_map, opacity), width="stretch",
                 caption=f"Q{step.question.number} {step.question.topic} → {step.answer.label} "
                         f"({step.share:.0%} of Q{step.question.number}'s predicted votes)")

# the PNG is made when the button is clicked (encoding it took half of every rerun's time)
st.download_button("Download overlay (PNG)", lambda: png_bytes(blended),
                   file_name=f"gradcam_{os.path.splitext(title)[0]}_{answer}.png",
                   mime="image/png", on_click="ignore")

# last, though shown beside the legend: the scores need forward passes of their own (31 for a
# new image, 14 for a new answer or map: about 0.35 s and 0.15 s on 2 cores), and the maps
# above should not wait for them
with score_col:
    if explained.probability(answer) < MIN_PROBABILITY:
        st.info(f"No faithfulness scores: the predicted probability of this answer "
                f"({explained.probability(answer):.3f}) is below {MIN_PROBABILITY}, too small "
                f"for removing pixels to show anything. Pick an answer the model gives more "
                f"weight to.")
    else:
        scores = map_scores(loaded, source, explained, answer, method, layer)
        centre = map_scores(loaded, source, explained, answer, None, None)  # no extra pass
        deletion_col, insertion_col = st.columns(2)
        # + 0.0: a tie shows as +0.00, not -0.00
        deletion_delta = round(scores["deletion"] - centre["deletion"], 2) + 0.0
        insertion_delta = round(scores["insertion"] - centre["insertion"], 2) + 0.0
        deletion_col.metric("Deletion AUC (lower is better)", f"{scores['deletion']:.2f}",
                            delta=f"{deletion_delta:+.2f} vs centre",
                            delta_color="inverse" if deletion_delta else "off")
        insertion_col.metric("Insertion AUC (higher is better)", f"{scores['insertion']:.2f}",
                             delta=f"{insertion_delta:+.2f} vs centre",
                             delta_color="normal" if insertion_delta else "off")
        st.markdown(against_centre(scores, centre))
    st.caption("Can this map be trusted? Deletion: the pixels it marks red are replaced by sky, "
               "most important first; if they matter, the probability falls fast (area under "
               "the curve, relative to the unperturbed probability). Insertion: they are put "
               "back into a blurred image; if they matter, it comes back fast (above 1: the "
               "pixels it marks raise the probability beyond the original's). *vs centre*: the "
               "same for a plain blob on the middle of the image, which any useful map must "
               "beat." + measured)
