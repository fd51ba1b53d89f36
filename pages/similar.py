"""Similar galaxies: a query galaxy beside its nearest galaxies in a configured dataset.

Another page hands a query over by setting ``st.session_state["similar_query"]`` to
``{"dataset": name, "galaxy_id": id}`` or ``{"image": bytes, "name": str}`` and switching here.
"""

import logging

import pandas as pd
import streamlit as st

from galaxy_core.data import DataError, image_path
from galaxy_core.datasets import SAMPLES_NAME
from galaxy_core.framing import caption_note
from galaxy_core.images import ImageError, display_crop, prepare_framed
from galaxy_core.schema import ANSWER_BY_COLUMN, QUESTION_OF_COLUMN, answer_name
from galaxy_core.similarity import (SimilarityError, check_checkpoint, dataset_index_path,
                                    frames_unlike_default, framing_of, search, update_index)
from pages.common import (UPLOAD_LIMIT_MB, UPLOAD_LIMIT_TEXT, active_model, admin_gate,
                          checked_uploads, configured_datasets, dataset_picker, embedder_for,
                          image_flags, index_build_lock, is_admin, query_embedding,
                          read_labels_cached, sample_choices, sample_title, similarity_index,
                          thumb)

log = logging.getLogger("galaxy_app")

HANDOVER_KEY = "similar_query"
THUMB_WIDTH = 150  # px: 2 a row on a phone
FROM_DATASET, FROM_SAMPLE, FROM_UPLOAD, FROM_HANDOVER = (
    "A galaxy of this dataset", "A shipped sample", "An image of yours", "The image handed over")


def take_handover() -> None:
    """Turn a query handed over by another page into this page's widget state."""
    query = st.session_state.pop(HANDOVER_KEY, None)
    if not isinstance(query, dict):
        return
    if "image" in query:
        st.session_state["similar_image"] = {"bytes": bytes(query["image"]),
                                             "name": str(query.get("name") or "image")}
        st.session_state["similar_source"] = FROM_HANDOVER
    elif "dataset" in query and "galaxy_id" in query:
        if query["dataset"] not in [d.name for d in configured_datasets()]:
            st.warning(f"The dataset {query['dataset']!r} is not offered here.")
            return
        st.session_state["similar_dataset"] = query["dataset"]
        st.session_state["similar_source"] = FROM_DATASET
        st.session_state["similar_galaxy"] = str(query["galaxy_id"])


def pick(galaxy_id: str) -> None:
    st.session_state["similar_source"] = FROM_DATASET
    st.session_state["similar_galaxy"] = galaxy_id


def build(dataset, path: str, embedder, rebuild: bool = False) -> None:
    """Embed the dataset's galaxies the index lacks (all, with ``rebuild``), with a progress bar
    (one build at a time)."""
    with st.spinner("Waiting for another index build to finish…"), index_build_lock():
        bar = st.progress(0.0, text=f"Indexing {dataset.name}…")
        try:
            _, added, errors = update_index(
                embedder, dataset.images, path, rebuild=rebuild,
                on_progress=lambda done, total: bar.progress(
                    done / max(1, total), text=f"Embedded {done} of {total} galaxies"))
        except (DataError, SimilarityError) as exc:
            log.warning("index of dataset %r not built: %s", dataset.name, exc)
            st.error(f"{exc}." if is_admin() else "The index cannot be built right now; the "
                     "maintainers have been told in the server log.")
            st.stop()
        bar.empty()
    if errors:
        log.warning("indexing %r skipped %d unreadable images", dataset.name, len(errors))
        st.warning(f"{len(errors)} image(s) could not be read and are not in the index.")
    st.toast(f"Indexed {added} new galaxies of {dataset.name}.")


st.title("🔍 Similar galaxies")
st.caption("The galaxies of a dataset that look most alike to the model: its features of each "
           "image, averaged over the 8 flips and right-angle turns, compared by cosine "
           "distance (0 = the same, larger = less alike).")
loaded = active_model()
if loaded is None:
    st.stop()
take_handover()
dataset = dataset_picker("Search among", key="similar_dataset", labelled=False)
embedder = embedder_for(loaded)
index_path = dataset_index_path(dataset.name, embedder.identity)
try:
    index = similarity_index(index_path)
    if index is not None:
        check_checkpoint(index, embedder.identity, "this dataset's index")
except SimilarityError as exc:
    log.warning("similarity index of dataset %r unusable: %s", dataset.name, exc)
    st.error(f"{exc}." if is_admin() else "This dataset's similarity index cannot be read; the "
             "maintainers have been told in the server log.")
    index = None
    if not is_admin():
        st.stop()
if index is not None and dataset.name == SAMPLES_NAME and frames_unlike_default(index):
    build(dataset, index_path, embedder, rebuild=True)  # from before indexes framed galaxies
    st.rerun()
if index is None:
    if dataset.name == SAMPLES_NAME:  # 40 galaxies: a few seconds, for anyone
        build(dataset, index_path, embedder)
        st.rerun()
    st.info(f"There is no similarity index of {dataset.name!r} for the model in use yet.")
    if admin_gate("Building a similarity index") and st.button("Build the index"):
        build(dataset, index_path, embedder)
        st.rerun()
    st.stop()
if is_admin() and dataset.name != SAMPLES_NAME:
    with st.expander("Index (maintainers)"):
        st.caption(f"{len(index)} galaxies indexed. Galaxies added to the folder since are "
                   "embedded by an update; the command line does the same: "
                   f"`python -m train.embed --dataset \"{dataset.name}\"`.")
        if st.button("Update the index"):
            build(dataset, index_path, embedder)
            st.rerun()
        if frames_unlike_default(index):
            st.caption("This index holds its galaxies as they are, and so compares uploads as "
                       "they are, while Classify frames them first (a wide field is zoomed in "
                       "on). Building it again frames both; the old index serves until then.")
            if st.button("Build it again, framed"):
                build(dataset, index_path, embedder, rebuild=True)
                st.rerun()
if len(index) == 0:
    st.info(f"The index of {dataset.name!r} holds no galaxies: its folder had no readable images.")
    st.stop()

ids = index.galaxy_ids.tolist()
if st.session_state.get("similar_galaxy") not in ids:
    wanted = st.session_state.pop("similar_galaxy", None)
    if wanted is not None and st.session_state.get("similar_source") == FROM_DATASET:
        st.warning(f"Galaxy {wanted} is not in the index of {dataset.name!r}.")
sources = [FROM_DATASET, FROM_SAMPLE, FROM_UPLOAD]
handed = st.session_state.get("similar_image")
if handed:
    sources.append(FROM_HANDOVER)
source = st.radio("Query", sources, key="similar_source", horizontal=True)
k = st.slider("Neighbours", 1, 24, 8, key="similar_k")

query_id, query_vector, shown, framing_note = None, None, None, ""
try:
    if source == FROM_DATASET:
        query_id = st.selectbox("GalaxyID", ids, key="similar_galaxy")
        query_vector = index.vector_of(query_id)
        # the region its vector was made of, framed again as when it was indexed
        region, frame = prepare_framed(image_path(dataset.images, query_id), 320,
                                       loaded.preprocess.crop_fraction, framing=framing_of(index))
        shown, framing_note = region.permute(1, 2, 0).numpy(), caption_note(frame, "search")
    elif source == FROM_SAMPLE:
        samples = sample_choices()
        query_id = st.selectbox("Sample galaxy", list(samples), key="similar_sample")
        with open(samples[query_id], "rb") as handle:
            data = handle.read()
        query_vector, frame = query_embedding(loaded, data, sample_title(query_id), index)
        shown = display_crop(data, loaded.preprocess, name=sample_title(query_id), frame=frame)
        framing_note = caption_note(frame, "search")
    else:
        if source == FROM_UPLOAD:
            uploads = checked_uploads([f for f in [st.file_uploader(
                "Upload a galaxy image", key="similar_upload",
                max_upload_size=UPLOAD_LIMIT_MB)] if f is not None])
            st.caption(f"{UPLOAD_LIMIT_TEXT}. Best with colour cut-outs centred on the galaxy.")
            if not uploads:
                st.info("Upload an image to find the galaxies most like it.")
                st.stop()
            data, name = uploads[0].getvalue(), uploads[0].name
        else:
            data, name = handed["bytes"], handed["name"]
        # framed as the index's galaxies were (as Classify frames it), so what is shown and
        # judged is the region the search compares
        query_vector, frame = query_embedding(loaded, data, name, index)
        shown = display_crop(data, loaded.preprocess, name=name, frame=frame)
        framing_note = caption_note(frame, "search")
        for flag in image_flags(data, name, loaded.preprocess.crop_fraction, frame):
            st.warning(f"Unlike the training images: {flag.message}. The model's features of "
                       f"such an image say little, so its nearest galaxies may be alike only "
                       f"in ways that do not matter.")
except ImageError as exc:
    st.error(f"{exc}.")
    st.stop()

positions, distances = search(index, query_vector, k + 1)
found = [(ids[p], float(d)) for p, d in zip(positions[0], distances[0]) if ids[p] != query_id][:k]

labels = None
if dataset.labelled:
    try:
        labels = read_labels_cached(dataset.labels)
        labels = labels.set_index(labels["GalaxyID"].astype(str))
    except DataError as exc:
        log.warning("labels of dataset %r cannot be read: %s", dataset.name, exc)
learned = [c for c in loaded.trained_columns if labels is not None and c in labels.columns]


def volunteers(galaxy_id: str) -> dict:
    """The volunteers' fractions of the learned answers (empty where unknown)."""
    if labels is None or galaxy_id not in labels.index:
        return {}
    row = labels.loc[galaxy_id]
    return {c: float(row[c]) for c in learned if pd.notna(row[c])}


def top_answer(fractions: dict, question_number: int = 1) -> str:
    known = {c: v for c, v in fractions.items() if QUESTION_OF_COLUMN[c].number == question_number}
    if not known:
        return ""
    column = max(known, key=known.get)
    return f"{ANSWER_BY_COLUMN[column].label} {known[column]:.2f}"


query_col, neighbours_col = st.columns([1, 3])
with query_col:
    st.markdown("**Query**")
    if shown is not None:
        st.image(shown, caption=f"{query_id or name}: the region the model sees{framing_note}",
                 width="stretch")
with neighbours_col:
    st.markdown(f"**The {len(found)} nearest of {len(index)} galaxies in {dataset.name}**"
                + (" (the query itself left out)" if query_id in ids else ""))
    grid = st.container(horizontal=True, gap="small")
    for galaxy_id, distance in found:
        with grid.container(width=THUMB_WIDTH, gap=None):
            image = thumb(image_path(dataset.images, galaxy_id), 128, 0.6)
            if image is None:
                st.caption(f"{galaxy_id}: no readable image")
            else:
                st.image(image, width="stretch")
            st.button(f"{galaxy_id} · {distance:.3f}", key=f"similar_pick_{galaxy_id}",
                      width="stretch", on_click=pick, args=(galaxy_id,),
                      help="Distance to the query. Click: find the galaxies like this one")
            answer = top_answer(volunteers(galaxy_id))
            if answer:
                st.caption(f"volunteers: {answer}")

if learned:
    rows = [{"rank": "query", "GalaxyID": query_id or name, "distance": None,
             **volunteers(query_id or "")}]
    rows += [{"rank": str(rank), "GalaxyID": galaxy_id, "distance": distance,
              **volunteers(galaxy_id)} for rank, (galaxy_id, distance) in enumerate(found, 1)]
    table = pd.DataFrame(rows, columns=["rank", "GalaxyID", "distance"] + learned)
    st.dataframe(table.rename(columns={c: answer_name(c) for c in learned}), hide_index=True,
                 width="stretch", placeholder="—",
                 column_config={"distance": st.column_config.NumberColumn(format="%.3f")})
    st.caption("The volunteers' vote fractions for the answers the model learned; — : not "
               "known for that galaxy (or an image not in the dataset).")
else:
    st.caption("This dataset has no volunteer fractions for the answers the model learned.")
