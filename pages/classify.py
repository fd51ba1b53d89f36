"""Classify: upload images (or pick samples) -> verdict, 37 probabilities, Kaggle CSV."""


import pandas as pd
import streamlit as st

from galaxy_core.augment import TTA_VIEWS
from galaxy_core.datasets import SAMPLES_NAME
from galaxy_core.fits import BandSet, group_band_files, is_fits
from galaxy_core.framing import (FRAMING_BY_DEFAULT, WIDE_PERCENTILE, WIDE_ZOOM, action_of,
                                  caption_note, shipped_stats)
from galaxy_core.images import ImageError, open_image, prepare_framed
from galaxy_core.predict import galaxy_id_of, predict_files, submission_csv_bytes
from galaxy_core.schema import ANSWER_COLUMNS, QUESTIONS, answer_name
from galaxy_core.uncertainty import FLAGS_COLUMN, interval_table
from galaxy_core.verdict import walk_tree
from pages.common import (UPLOAD_LIMIT_MB, UPLOAD_LIMIT_TEXT, active_model, checked_uploads,
                          image_flags, probabilities_frame, probability_chart, sample_choices,
                          sample_title)

MAX_DETAILED = 10  # galaxies shown with full charts; the rest are in the table and CSV
# what a flagged image's verdict starts with
CAVEAT = ("this image is unlike the training images, so these answers are a guess. Read as "
          "a galaxy cut-out, the model would say:")
# ... and one where no galaxy was found at all (blank, or nothing stands out from the sky)
NO_GALAXY = ("no galaxy was found in this image, so these answers describe none. Read as a "
             "galaxy cut-out anyway, the model would say:")
NO_GALAXY_FLAGS = ("blank", "no_source")  # quality.Flag codes


def caveat_of(flags: list) -> str:
    """How a verdict starts ("" for an image like the training ones)."""
    if not flags:
        return ""
    return NO_GALAXY if any(f.code in NO_GALAXY_FLAGS for f in flags) else CAVEAT


def fits_caption(info: dict) -> str:
    """What a FITS upload's picture says beyond its pixels: where it is, and what was done."""
    where = (f"Centre at RA {info['radec'][0]:.5f}°, Dec {info['radec'][1]:+.5f}° (from the "
             f"file's WCS)." if info.get("radec") else "No sky coordinates in the file.")
    return " ".join([f"FITS, shown with an asinh stretch (Lupton et al. 2004) like the SDSS "
                     f"cut-outs the model learned from. {where}"] +
                    [f"Note: {note}." for note in info.get("notes", [])])


def text_width(texts) -> int:
    """Pixels for a table column to show its longest text whole (the table's 14 px font)."""
    return max(90, min(1600, round(7.5 * max((len(t) for t in texts), default=0)) + 24))


def interval_caption(calibration, tta: bool) -> str:
    """What the black line across each bar means, and how far to trust it (said once a page)."""
    measured = (calibration.coverage or {}).get("all") or {}
    earlier = " by the model before its fine-tune" if calibration.stage else ""
    held = (f" (on galaxies kept out of training{earlier}: {measured['coverage']:.0%})"
            if measured.get("coverage") is not None else "")
    percent = f"{calibration.level:.0%}"
    article = "an" if percent.startswith(("8", "11%", "18")) else "a"  # "an eighty", "a ninety"
    return (f"The black line across a bar is {article} {percent} range: for "
            f"{calibration.level:.0%} of galaxies like the training ones, the share of "
            f"volunteers who gave that answer falls inside it{held}" +
            ("." if tta else f"; with one view instead of {TTA_VIEWS} a little less often.") +
            " Images unlike the training ones get no range, and for a galaxy cut out much "
            "tighter or off centre it holds a little less often.")


st.title("🔭 Classify galaxies")
loaded = active_model()
if loaded is None:
    st.stop()

uploads = checked_uploads(st.file_uploader(
    "Upload galaxy images", accept_multiple_files=True, max_upload_size=UPLOAD_LIMIT_MB,
    help="Best results with SDSS-like colour cut-outs centred on the galaxy, as in the Kaggle "
         "images (424 px)."))
st.caption(f"{UPLOAD_LIMIT_TEXT}. Best with colour cut-outs centred on the galaxy.")

names = sample_choices()
if "classify_samples" in st.session_state:  # handed over by the Home gallery
    name_of = {path: name for name, path in names.items()}
    st.session_state["classify_pick"] = [name_of[p] for p in st.session_state.pop(
        "classify_samples") if p in name_of]
chosen = st.multiselect("…or pick shipped sample galaxies", list(names), key="classify_pick")
left, middle, right = st.columns([1, 2, 2])
left.button("Try 4 samples", help="one click: classify four shipped galaxies",
            on_click=lambda: st.session_state.update(classify_pick=list(names)[:4]))
frame_on = middle.toggle(
    "Frame the galaxy automatically", value=FRAMING_BY_DEFAULT, key="classify_framing",
    help="Find the galaxy nearest the centre and, where it is far smaller in its frame than "
         "almost every training galaxy (a wide field), zoom in on it so it fills the frame as "
         "the training cut-outs do; where nothing lies at the middle of the image, centre the "
         "frame on the galaxy. Other images keep their frame (zooming out a large galaxy was "
         f"measured to do more harm than good), but a galaxy larger in its frame than "
         f"{WIDE_PERCENTILE}% of training ones, perhaps cut out tighter than they were, has half "
         f"of its {TTA_VIEWS} views look {WIDE_ZOOM:g}x wider. The picture beside each verdict "
         f"shows what the model saw.")
framing = shipped_stats() if frame_on else None
tta = right.toggle(f"Average over {TTA_VIEWS} rotations/flips",
                   value=True, key="classify_tta",
                   help=f"Test-time augmentation. Galaxies have no orientation, so the model's "
                        f"answers for the {TTA_VIEWS} "
                        "flips and right-angle turns of an image are averaged (with automatic "
                        f"framing, half of them {WIDE_ZOOM:g}x wider for a galaxy large in its "
                        "frame): "
                        "slightly more accurate (see the Model card's TTA column), "
                        f"{TTA_VIEWS}x the compute. Off: one pass.")

# FITS band files of one galaxy (m51_g.fits, m51_r.fits, m51_i.fits) make one colour picture
upload_names = [f.name for f in uploads]
triplets, singles = group_band_files(upload_names)
sources = [uploads[i].getvalue() for i in singles] + [
    BandSet(*(uploads[i].getvalue() for i in index), names=tuple(upload_names[i] for i in index))
    for _, index in triplets] + [names[c] for c in chosen]
labels = [upload_names[i] for i in singles] + [f"{stem}.fits" for stem, _ in triplets] + [
    sample_title(c) for c in chosen]
# one row per GalaxyID (the file name's stem), as in a Kaggle CSV: a second image of the same
# name (uploaded twice, or uploaded and picked as a sample) is left out, and the page says so
kept_ids, unique, repeated = set(), [], []
for source, label in zip(sources, labels):
    if galaxy_id_of(label) in kept_ids:
        repeated.append(label)
    else:
        kept_ids.add(galaxy_id_of(label))
        unique.append((source, label))
sources, labels = [s for s, _ in unique], [label for _, label in unique]
if repeated:
    st.warning(f"Left out, as a galaxy of the same name is already here (one row per GalaxyID): "
               f"{', '.join(repeated)}. Rename a file to classify it too.")
if not sources:
    st.info("Upload one or more images, or pick a sample galaxy, to see what the model says.")
    st.stop()

progress = st.progress(0.0, text=f"Classifying {len(sources)} image(s)…")
result = predict_files(loaded, sources, names=labels, batch_size=32, tta=tta,
                       workers=0 if len(sources) <= 32 else 1, framing=framing,
                       on_progress=lambda done, total: progress.progress(
                           done / total, text=f"Classified {done} of {total}"))
progress.empty()
for _, message in result.errors:
    st.error(f"Skipped: {message}")
if result.frame.empty:
    st.stop()

values = result.frame[list(ANSWER_COLUMNS)].to_numpy()
good_sources = [sources[i] for i in result.kept]
verdicts = [walk_tree(v, loaded.trained_columns) for v in values]
unlike = [image_flags(source, labels[k], loaded.preprocess.crop_fraction, frame)
          for source, k, frame in zip(good_sources, result.kept, result.frames, strict=True)]
unlike_text = ["; ".join(f.message for f in found) for found in unlike]  # "": like them

if len(values) > 1:
    st.subheader(f"{len(values)} galaxies")
    table = pd.DataFrame({"GalaxyID": result.frame["GalaxyID"],
                          "verdict": [("(no galaxy found) " if caveat_of(w) == NO_GALAXY else
                                       "(a guess) " if w else "") + v.answers
                                      for v, w in zip(verdicts, unlike)],
                          "unlike the training images": unlike_text,
                          "framing": [action_of(f, tta) for f in result.frames]})
    # the answer the verdict took at each question it walked, with its share (empty: the walk
    # did not reach that question for this galaxy)
    walked = [q for q in QUESTIONS if any(s.question == q for v in verdicts for s in v.steps)]
    for question in walked:
        table[f"Q{question.number} {question.topic}"] = [
            next((f"{s.answer.label} ({s.share:.0%})" for s in v.steps if s.question == question),
                 "") for v in verdicts]
    learned = [c for c in ANSWER_COLUMNS if c in loaded.trained_columns]
    for column in learned:  # sortable: e.g. the likeliest mergers of a batch first
        table[answer_name(column)] = result.frame[column].to_numpy()
    config = {answer_name(c): st.column_config.ProgressColumn(format="%.2f", min_value=0.0,
                                                              max_value=1.0) for c in learned}
    # a cell's text does not wrap, so the text columns are as wide as their longest entry and
    # the IDs pinned: every verdict and flag is read whole, the columns after it scroll beside
    # its galaxy's ID
    for column in ("verdict", "unlike the training images", "framing",
                   *(f"Q{q.number} {q.topic}" for q in walked)):
        config[column] = st.column_config.TextColumn(width=text_width([*table[column], column]))
    config["GalaxyID"] = st.column_config.TextColumn(pinned=True)
    st.dataframe(table, hide_index=True, width="stretch", column_config=config)
    skipped = sorted({q.number: q for v in verdicts for q in v.not_learned}.items())
    st.caption(f"One row per galaxy: the verdict, the answer it took at each question (its share "
               f"of that question's votes), then the {len(learned)} learned answers' "
               f"probabilities; click a column's header to sort by it. The CSV below has all "
               f"{len(ANSWER_COLUMNS)}."
               + (f" Not learned, so left out of the verdicts: "
                  f"{', '.join(q.topic for _, q in skipped)}." if skipped else ""))
untrained = loaded.untrained_columns
st.download_button(
    "Download predictions (Kaggle CSV)", submission_csv_bytes(result.frame),
    file_name="galaxy_predictions.csv", mime="text/csv",
    help="Header GalaxyID,Class1.1,…,Class11.6." + (
        f" {len(untrained)} answers were never learned by this model: their columns hold the "
        f"untrained head's output, not predictions." if untrained else ""))
if loaded.calibration is not None:
    intervals = interval_table(loaded.calibration, result.frame["GalaxyID"], values,
                               flags=unlike_text)
    st.download_button(
        f"Download {loaded.calibration.level:.0%} intervals (CSV)",
        intervals.to_csv(index=False, float_format="%.6f").encode(),
        file_name="galaxy_intervals.csv", mime="text/csv",
        help="GalaxyID, each learned answer's interval (Class1.1_low, Class1.1_high, …), then "
             f"{FLAGS_COLUMN}: an image unlike the training ones gets no interval, and this "
             "column says why")

untrained_count = len(loaded.untrained_columns)
show_untrained = untrained_count > 0 and st.toggle(
    f"Also show the {untrained_count} answers the model never learned", value=False,
    key="classify_untrained",
    help="This model was trained on galaxies labelled for only some questions; its outputs for "
         "the others are not predictions. They are drawn grey and left out of the verdict.")
if loaded.calibration is not None and not all(unlike):
    st.caption(interval_caption(loaded.calibration, tta))
for i, (galaxy_id, verdict, preds) in enumerate(zip(result.frame["GalaxyID"], verdicts, values)):
    if i >= MAX_DETAILED:
        st.caption(f"Charts shown for the first {MAX_DETAILED}; all {len(values)} are in the "
                   f"table and the CSV.")
        break
    st.divider()
    image_col, chart_col = st.columns([1, 2])
    with image_col:
        source = good_sources[i]
        try:
            # the region the prediction cut (a JPEG is decoded at another scale for a bigger
            # picture, and a new choice there could frame it otherwise)
            shown, chosen = prepare_framed(source, 320, loaded.preprocess.crop_fraction,
                                           labels[result.kept[i]], frame=result.frames[i])
        except ImageError:
            shown, chosen = None, None
        if shown is not None:
            st.image(shown.permute(1, 2, 0).numpy(), width="stretch",
                     caption=f"{galaxy_id} — the region the model sees"
                             f"{caption_note(chosen, '8 views' if tta else 'one view')}")
        if is_fits(source):
            st.caption(fits_caption(open_image(source, labels[result.kept[i]]).info))
    with chart_col:
        st.markdown(f"### {galaxy_id}")
        if st.button("More like this", key=f"classify_similar_{i}",
                     help="Galaxies the model sees as most alike"):
            st.session_state["similar_query"] = (
                {"dataset": SAMPLES_NAME, "galaxy_id": galaxy_id} if isinstance(source, str)
                else {"image": source, "name": str(galaxy_id)})
            st.switch_page("pages/similar.py")
        st.markdown(f"**Verdict:** *{caveat_of(unlike[i])}* {verdict.text}" if unlike[i]
                    else f"**Verdict:** {verdict.text}")
        for flag in unlike[i]:
            st.warning(f"Unlike the training images: {flag.message}. The model has seen "
                       "nothing like this, so treat its answers with caution.")
        # no interval for a flagged image: calibrated on galaxies like the training ones, it
        # would promise what it does not hold
        frame = probabilities_frame(preds, loaded.trained_columns,
                                    None if unlike[i] else loaded.calibration)
        charted = frame if show_untrained else frame[frame["learned"]]
        st.altair_chart(probability_chart(charted), width="stretch")
        with st.expander("All 37 probabilities as a table"):
            shown = frame.drop(columns=["low", "high"] if loaded.calibration is None or unlike[i]
                               else [])
            st.dataframe(shown.round({"probability": 4, "low": 3, "high": 3}),
                         hide_index=True, width="stretch")
