"""What every page shares: the Streamlit cache wrappers, who the visitor is, the datasets,
the model in use, and charts.

This is the only module that owns ``st.cache_resource`` / ``st.cache_data``. Models load once
per checkpoint file (the cache key includes its modification time and size, so a retrained
file is reloaded) and are shared by all sessions; ``LoadedModel.lock`` serialises their use.

Access (``galaxy_core.access``): ``session_access()`` decides once per run of a page whether
this visitor is an admin; ``admin_gate()`` is how a page puts an action behind that rule.
Model rule: a session uses the app-wide active model, unless an admin in that session picked
another in the sidebar; the sidebar always names the model the page uses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from galaxy_core import access, datasets, faithfulness, paths, registry, similarity
from galaxy_core.checkpoint import CheckpointError, LoadedModel, load_checkpoint
from galaxy_core.config import Preprocess
from galaxy_core.data import DataError, image_path, read_labels
from galaxy_core.explain import DEFAULT_LAYER, DEFAULT_METHOD, ExplainedImage, explain_source
from galaxy_core.framing import FRAMING_BY_DEFAULT, shipped_stats
from galaxy_core.images import (READABLE, ImageError, MAX_BYTES, decoded_rgb, display_crop,
                                upload_problem)
from galaxy_core.jobs import TrainingJobs
from galaxy_core.predict import predict_files
from galaxy_core.quality import flags_as_seen, shipped_ranges
from galaxy_core.schema import (ANSWER_BY_COLUMN, ANSWER_COLUMNS, QUESTION_OF_COLUMN, QUESTIONS,
                                answer_name)
from galaxy_core.uncertainty import bounds

log = logging.getLogger("galaxy_app")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # the app's log lines

UPLOAD_LIMIT_MB = MAX_BYTES // (1024 * 1024)  # every uploader's own limit (it says so itself)
UPLOAD_LIMIT_TEXT = f"{READABLE}, up to {UPLOAD_LIMIT_MB} MB and 40 megapixels each"
MODEL_KEY = "model_path"  # an admin's explicit pick; absent: follow the app's active model
UNLOCKED_KEY = "admin_unlocked"
FOLLOW = ""  # the picker's "follow the app's active model" option


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


@st.cache_data(max_entries=8, show_spinner=False)
def _dataset_predictions(model_path: str, model_mtime: float, images_dir: str,
                         galaxy_ids: tuple[int, ...]) -> pd.DataFrame:
    loaded = get_model(model_path)
    sources = [image_path(images_dir, g) for g in galaxy_ids]
    progress = st.progress(0.0, text=f"Predicting {len(sources)} galaxies…")
    result = predict_files(loaded, sources, batch_size=32, tta=False, workers=1,
                           on_progress=lambda done, total: progress.progress(
                               done / max(1, total), text=f"Predicted {done} of {total}"))
    progress.empty()
    frame = result.frame.copy()
    frame["GalaxyID"] = frame["GalaxyID"].astype(int)
    return frame


def dataset_predictions(loaded: LoadedModel, images_dir: str, galaxy_ids) -> pd.DataFrame:
    """One-view predictions for ``galaxy_ids`` of a dataset (unreadable images left out),
    cached per model file and dataset."""
    return _dataset_predictions(loaded.path, os.path.getmtime(loaded.path), images_dir,
                                tuple(galaxy_ids))


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


def checked_uploads(files) -> list:
    """The uploads worth decoding; each refused one gets a warning on the page saying why."""
    kept = []
    for upload in files or []:
        problem = upload_problem(upload.name, upload.size)
        if problem:
            st.warning(f"**{upload.name}** was not used: {problem}.")
        else:
            kept.append(upload)
    return kept


def source_key(source) -> str:
    """What a cache knows an image by: a path as it is, bytes by their hash, a FITS band set
    by its three bands'."""
    if isinstance(source, str):
        return source
    if isinstance(source, (bytes, bytearray)):
        return hashlib.sha256(source).hexdigest()
    return "|".join(source_key(band) for band in (source.g, source.r, source.i))


@st.cache_data(max_entries=256, show_spinner=False)
def _image_flags(image_key: str, name: str, frame_key, crop_fraction: float, _frame,
                 _source) -> list:
    try:
        return flags_as_seen(decoded_rgb(_source, name), shipped_ranges(), frame=_frame,
                             crop_fraction=crop_fraction)
    except ImageError:
        return []


def image_flags(source, name: str, crop_fraction: float, frame=None) -> list:
    """Why what the model sees of this image is unlike the training cut-outs ([] when it is
    not, or unreadable: the prediction says so). ``frame``: the ``framing.Frame`` the model's
    input was cut with (a prediction's or a map's; None: framing off, the image as it is), so
    the region judged is the one the model saw, of which the model takes the centre
    ``crop_fraction``. Cached: a page's every rerun asks again (0.4 s for a large photo)."""
    frame_key = None if frame is None else (frame.cx, frame.cy, frame.side, frame.moved,
                                            frame.image_width, frame.wider)
    return _image_flags(source_key(source), name, frame_key, crop_fraction, frame, source)


# ---- who the visitor is ------------------------------------------------------------------

def configured_password() -> str | None:
    if os.environ.get(access.PASSWORD_ENV):
        return os.environ[access.PASSWORD_ENV]
    try:
        return st.secrets.get("admin_password")
    except Exception:  # no secrets file at all
        return None


def current_visitor() -> access.Visitor:
    """The TCP peer and headers of the request that opened this session. Streamlit's public
    ``st.context.ip_address`` reports loopback and "unknown" alike as None, so the peer is read
    from the session's client context (checked against the pinned Streamlit by
    tests/test_publish.py); anything unexpected makes the visitor a stranger."""
    try:
        from streamlit.runtime.context import _get_client_context
        client = _get_client_context()
        peer = client.remote_ip if client is not None else None
        headers = [(str(k), str(v)) for k, v in client.headers] if client is not None else []
    except Exception:  # a Streamlit without these internals: nobody is proven local
        log.warning("cannot read the connection's address; every visitor is a stranger")
        return access.Visitor(peer=None)
    if not isinstance(peer, str):  # no connection (AppTest's stand-in runtime, bare mode)
        return access.Visitor(peer=None)
    return access.Visitor.from_headers(peer, headers)


@st.cache_resource
def password_throttle() -> access.PasswordThrottle:
    """One throttle per server process, shared by every session."""
    return access.PasswordThrottle()


def trusted_proxies() -> frozenset[str]:
    return access.trusted_proxies(os.environ.get(access.TRUSTED_PROXIES_ENV))


def session_access() -> access.Access:
    return access.decide(current_visitor(), configured_password(),
                         bool(st.session_state.get(UNLOCKED_KEY)), trusted_proxies(),
                         local_admin=os.environ.get(access.LOCAL_ADMIN_ENV, "1") != "0")


def is_admin() -> bool:
    return session_access().admin


def who() -> str:
    """How the activation log names this session's admin."""
    client = current_visitor().client_key(trusted_proxies())
    return f"{'local visitor' if session_access().local else 'admin password'} ({client})"


def admin_gate(action: str) -> bool:
    """True for an admin. Otherwise say why ``action`` is locked, offer the password form when
    a password is set (throttled per session and per client), and return False."""
    standing = session_access()
    if standing.admin:
        return True
    st.warning(f"{action} is for the app's maintainers: {standing.reason}.")
    if standing.can_unlock:
        visitor = current_visitor()
        context = get_script_run_ctx()
        keys = (f"session:{context.session_id if context else 'unknown'}",
                f"client:{visitor.client_key(trusted_proxies())}")
        with st.form("unlock", clear_on_submit=True):
            password = st.text_input("Admin password", type="password")
            if st.form_submit_button("Unlock"):
                accepted, message = password_throttle().try_password(
                    configured_password(), password, *keys)
                if accepted:
                    st.session_state[UNLOCKED_KEY] = True
                    log.info("admin password accepted for client %s", visitor.client_key())
                    st.rerun()
                log.warning("refused admin password attempt from client %s", visitor.client_key())
                st.error(message)
    return False


# ---- datasets -----------------------------------------------------------------------------

def configured_datasets() -> list[datasets.Dataset]:
    try:
        extra = dict(st.secrets.get("datasets") or {})
    except Exception:  # no secrets file at all
        extra = {}
    return datasets.configured(extra=extra)


def dataset_picker(label: str, key: str, labelled: bool = True) -> datasets.Dataset:
    """A selectbox of the configured datasets, by name (the only way a visitor picks data)."""
    found = [d for d in configured_datasets() if d.labelled or not labelled]
    names = [d.name for d in found]
    name = st.selectbox(label, names, key=key,
                        help="The shipped samples, plus the datasets the maintainers set up "
                             f"({datasets.DATASETS_ENV}).")
    return datasets.by_name(found, name)


# ---- the model in use ----------------------------------------------------------------------

def model_in_use() -> str:
    """The checkpoint this session uses: an admin's explicit pick, else the app's active one."""
    pick = st.session_state.get(MODEL_KEY)
    if pick and is_admin():
        return pick
    return registry.active_model_path()


def active_model() -> LoadedModel | None:
    """The model this session uses; None with an error shown."""
    try:
        return get_model(model_in_use())
    except (CheckpointError, OSError) as exc:
        st.error(f"The selected model cannot be used: {exc}")
        return None


def model_sidebar() -> None:
    """The model in use, named and described in the sidebar; admins may pick another for their
    own session."""
    active = registry.active_model_path()
    with st.sidebar:
        st.subheader("Model")
        if not os.path.isfile(active):
            st.error("No model found. Restore the shipped model "
                     f"({os.path.relpath(paths.DEFAULT_MODEL, paths.PROJECT_ROOT)}).")
            return
        if is_admin():
            options = [FOLLOW] + registry.available_checkpoints()
            current = st.session_state.get(MODEL_KEY) or FOLLOW
            choice = st.selectbox(
                "Model for this session", options,
                index=options.index(current) if current in options else 0,
                format_func=lambda p: (f"the app's model ({registry.model_label(active)})"
                                       if p == FOLLOW else registry.model_label(p)),
                key="model_picker",
                help="Admins only. The app's model is what every visitor gets; another pick "
                     "applies to this browser session alone.")
            st.session_state[MODEL_KEY] = choice
        loaded = active_model()
        if loaded is None:
            return
        used = registry.model_label(loaded.path)
        follows = "the app's model" if model_in_use() == active else "this session's pick"
        st.markdown(f"**In use:** {used} ({follows})")
        info = registry.describe_model(loaded)
        st.caption(f"ResNet18, {info['head']} head, {info['image_size']} px input · trained "
                   f"{info['created'][:10]} on {info['data']} · {info['accuracy']}")
        if info["not_learned_questions"]:
            st.caption("Learned: " + ", ".join(info["learned_questions"]) + ". **Not learned** "
                       "(no training targets): " + ", ".join(info["not_learned_questions"]) + ".")


# ---- charts and tables ------------------------------------------------------------------

def probabilities_frame(preds, trained_columns, calibration=None) -> pd.DataFrame:
    """One row per answer: question, answer, probability, learned or not, and (with a
    ``calibration``) the calibrated interval's low and high ends (empty where not calibrated)."""
    low, high = (bounds(calibration, np.asarray(preds)[None]) if calibration is not None
                 else (np.full((1, len(ANSWER_COLUMNS)), np.nan),) * 2)
    rows = []
    for j, (column, value) in enumerate(zip(ANSWER_COLUMNS, preds)):
        question = QUESTION_OF_COLUMN[column]
        answer = next(a for a in question.answers if a.column == column)
        rows.append({"question": f"Q{question.number} {question.topic}", "answer": answer.label,
                     "column": column, "probability": float(value),
                     "low": float(low[0, j]), "high": float(high[0, j]),
                     "learned": column in trained_columns})
    return pd.DataFrame(rows)


def probability_chart(frame: pd.DataFrame) -> alt.Chart:
    """Horizontal bars grouped by question; answers the model never learned are greyed out;
    a black line across a bar is its calibrated interval, where the frame has one."""
    data = frame.assign(
        # said on the axis too: a grey bar alone reads as a prediction
        label=frame["question"].str.split(" ").str[0] + " · " + frame["answer"]
        + np.where(frame["learned"], "", " (not learned)"),
        status=np.where(frame["learned"], "learned", "not learned"),
    )
    y = alt.Y("label:N", sort=list(data["label"]), title=None,
              axis=alt.Axis(labelLimit=260, labelOverlap=False))
    tooltip = ["question", "answer", "column", alt.Tooltip("probability:Q", format=".3f"),
               "status"]
    has_intervals = "low" in data and data["low"].notna().any()
    if has_intervals:
        tooltip += [alt.Tooltip("low:Q", format=".2f", title="interval from"),
                    alt.Tooltip("high:Q", format=".2f", title="interval to")]
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
        y=y,
        color=alt.condition(alt.datum.status == "learned", alt.Color(
            "question:N", legend=None, sort=[f"Q{q.number} {q.topic}" for q in QUESTIONS]),
            alt.value("#d0d0d0")),
        tooltip=tooltip,
    )
    if has_intervals:
        whiskers = alt.Chart(data[data["low"].notna()]).mark_rule(
            color="#222", strokeWidth=1.5).encode(x="low:Q", x2="high:Q", y=y, tooltip=tooltip)
        bars = alt.layer(bars, whiskers)
    return bars.properties(height=19 * len(data))


AGREEMENT_PANEL = 110  # px: the side of one answer's scatter (two a row on a phone)
# px: what st.altair_chart is given for one (its "content" size collapses a layered chart)
AGREEMENT_SIZE = {"width": AGREEMENT_PANEL + 55, "height": AGREEMENT_PANEL + 80}


def agreement_title(column: str) -> str:
    """"Q1 smooth": short enough for a phone's half width (the column is in the tooltip)."""
    return f"Q{QUESTION_OF_COLUMN[column].number} {ANSWER_BY_COLUMN[column].label}"


def agreement_chart(merged: pd.DataFrame, column: str) -> alt.Chart:
    """Model against volunteer fraction for one answer ``column``: a small scatter with the
    diagonal where they agree. ``merged`` holds ``<column>`` (volunteers) and
    ``<column>_model``. One chart per answer, so a page can wrap them to the screen's width
    (a faceted chart has a fixed width and is cut off on a phone)."""
    part = merged[["GalaxyID", column, f"{column}_model"]].dropna()
    data = pd.DataFrame({"GalaxyID": part["GalaxyID"], "answer": answer_name(column),
                         "volunteers": part[column], "model": part[f"{column}_model"]})
    size = AGREEMENT_PANEL
    dots = alt.Chart().mark_circle(size=18, opacity=0.5).encode(
        x=alt.X("volunteers:Q", scale=alt.Scale(domain=[0, 1]), title="volunteers"),
        y=alt.Y("model:Q", scale=alt.Scale(domain=[0, 1]), title="model"),
        tooltip=["GalaxyID", "answer", alt.Tooltip("volunteers:Q", format=".3f"),
                 alt.Tooltip("model:Q", format=".3f")])
    diagonal = alt.Chart(pd.DataFrame({"volunteers": [0.0, 1.0], "model": [0.0, 1.0]})).mark_line(
        color="#999", strokeDash=[4, 4]).encode(x="volunteers:Q", y="model:Q")
    return alt.layer(diagonal, dots, data=data).properties(
        width=size, height=size, title=alt.Title(agreement_title(column), fontSize=11))


def history_chart(history: pd.DataFrame, columns, y_title: str) -> alt.Chart:
    """Per-epoch curves with a dot per epoch (a one-epoch run shows its point, not an empty
    frame) and whole-number epochs on the axis."""
    data = history.melt(id_vars="epoch", value_vars=list(columns), var_name="series",
                        value_name=y_title).dropna()
    return alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("epoch:Q", axis=alt.Axis(format="d", tickMinStep=1), title="epoch"),
        y=alt.Y(f"{y_title}:Q", scale=alt.Scale(zero=False), title=y_title),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["epoch:Q", "series:N", alt.Tooltip(f"{y_title}:Q", format=".4f")],
    ).properties(height=260)


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


def sample_choices() -> dict[str, str]:
    """The shipped samples as the pages offer them: name (the GalaxyID) -> path, in order."""
    return {os.path.splitext(os.path.basename(p))[0]: p for p in sample_paths()}


def sample_title(name: str) -> str:
    """How a page names a shipped sample it explains (and the warm-up must too: a cache key)."""
    return f"{name}.jpg"


# ---- similar galaxies (pages/similar.py) ---------------------------------------------------

@st.cache_data(max_entries=16, show_spinner=False)
def _checkpoint_identity(path: str, mtime: float, size: int) -> dict:
    return similarity.checkpoint_identity(path)


@st.cache_resource(max_entries=2, show_spinner="Preparing the model's features…")
def _embedder(path: str, mtime: float, size: int) -> similarity.Embedder:
    return similarity.Embedder(_load_model(path, mtime, size),
                               _checkpoint_identity(path, mtime, size))


def embedder_for(loaded: LoadedModel) -> similarity.Embedder:
    """The model's feature extractor for similarity search, shared by all sessions."""
    stat = os.stat(loaded.path)
    return _embedder(loaded.path, stat.st_mtime, stat.st_size)


@st.cache_resource(max_entries=4, show_spinner="Loading the similarity index…")
def _similarity_index(path: str, mtime: float, size: int) -> similarity.SimilarityIndex:
    return similarity.load_index(path)


def similarity_index(path: str) -> similarity.SimilarityIndex | None:
    """The index at ``path`` (reloaded when the file changes); None when there is none yet.
    Raises ``SimilarityError`` for a file that is not a usable index."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return _similarity_index(path, stat.st_mtime, stat.st_size)


@st.cache_resource
def index_build_lock() -> threading.Lock:
    """One index build at a time per server process (each uses every core)."""
    return threading.Lock()


@st.cache_data(max_entries=64, show_spinner="Embedding the query…")
def _query_embedding(model_path: str, mtime: float, data: bytes, name: str, framed: bool):
    stat = os.stat(model_path)
    return _embedder(model_path, stat.st_mtime, stat.st_size).embed_one(
        data, name, shipped_stats() if framed else None)


def query_embedding(loaded: LoadedModel, data: bytes, name: str, index):
    """An image's embedding for a search of ``index`` (cached by its bytes), framed first as
    the index's galaxies were, and the ``framing.Frame`` it was cut with (None: as it is).
    Raises ``ImageError``."""
    return _query_embedding(loaded.path, os.path.getmtime(loaded.path), data, name,
                            similarity.framing_of(index) is not None)


# ---- Grad-CAM page: one forward pass per image and views, kept; maps and scores on demand ----

@st.cache_resource(max_entries=4, ttl=1800, show_spinner="Looking at the galaxy…")
def _explained(model_path: str, model_mtime: float, image_key: str, tta: bool, framed: bool,
               name: str, _loaded: LoadedModel, _source) -> ExplainedImage:
    return explain_source(_loaded, _source, name, tta, framing=shipped_stats() if framed else None)


def explained_image(loaded: LoadedModel, source, name: str, tta: bool,
                    framed: bool = FRAMING_BY_DEFAULT) -> ExplainedImage:
    """The image seen once by the model (``galaxy_core.explain.ExplainedImage``), shared by
    every rerun and session that shows the same image, views and framing with the same model
    file; its maps, gradients and scores are kept inside it. ``framed``: automatic framing
    first, as on the Classify page. Raises ``ImageError``."""
    image_key = source_key(source)
    model_mtime = os.path.getmtime(loaded.path) if loaded.path else 0.0
    return _explained(loaded.path, model_mtime, image_key, tta, framed, name, loaded, source)


@st.cache_data(max_entries=256, show_spinner=False)
def _map_scores(model_path: str, model_mtime: float, image_key: str, tta: bool, framed: bool,
                answer: str, method: str | None, layer: str | None,
                _explained: ExplainedImage) -> dict[str, float]:
    heatmap = None if method is None else _explained.heatmap(answer, method, layer)
    return faithfulness.score_map(_explained, answer, heatmap)


def map_scores(loaded: LoadedModel, source, explained: ExplainedImage, answer: str,
               method: str | None, layer: str | None) -> dict[str, float]:
    """Deletion and insertion areas of one map (method None: of the centred map), cached."""
    image_key = source_key(source)
    model_mtime = os.path.getmtime(loaded.path) if loaded.path else 0.0
    return _map_scores(loaded.path, model_mtime, image_key, explained.tta,
                       explained.frame is not None, answer, method, layer, explained)


@st.cache_data(show_spinner=False)
def _faithfulness_report(path: str, mtime: float) -> dict | None:
    return faithfulness.read_report(path)


def faithfulness_report() -> dict | None:
    """The shipped model's faithfulness report (assets/models/faithfulness.json), if any."""
    path = faithfulness.REPORT_PATH
    return _faithfulness_report(path, os.path.getmtime(path)) if os.path.isfile(path) else None


# ---- kept warm: the Grad-CAM page's default image, computed before anyone asks --------------

# the page's image cache keeps an entry 30 min from when it was made; checked every minute, the
# default image is cold for at most a minute after it expires (a check that finds it is cheap)
WARM_UP_EVERY_S = 60


def warm_up_gradcam() -> bool:
    """Compute what the Grad-CAM page's first render shows, with the app's active model, into
    the caches the page reads: its default image (the first sample, 8 views), the default
    answer's map, the verdict row and the two scores. A visitor opening the page then waits for
    no model work (tests/test_gradcam_page.py checks the keys agree). False: no samples."""
    choices = sample_choices()
    if not choices:
        return False
    name, path = next(iter(choices.items()))
    loaded = get_model(registry.active_model_path())
    explained = explained_image(loaded, path, sample_title(name), tta=True,
                                framed=FRAMING_BY_DEFAULT)
    answer = explained.default_answer()
    explained.heatmap(answer, DEFAULT_METHOD, DEFAULT_LAYER)
    explained.verdict_maps(DEFAULT_METHOD, DEFAULT_LAYER)
    if explained.probability(answer) >= faithfulness.MIN_PROBABILITY:
        map_scores(loaded, path, explained, answer, DEFAULT_METHOD, DEFAULT_LAYER)
        map_scores(loaded, path, explained, answer, None, None)
    return True


class _NoContextWarning(logging.Filter):
    """Streamlit warns of a 'missing ScriptRunContext' whenever a thread outside a page's run
    touches a cached function's spinner; from the warm-up thread (``thread``) that is expected,
    from any other it is not and still shows."""

    def __init__(self, thread: int):
        super().__init__()
        self.thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread or "ScriptRunContext" not in record.getMessage()


def keep_warm() -> None:
    """serve.py's background thread, started once the server runs: warm the Grad-CAM page up,
    and check it every ``WARM_UP_EVERY_S`` (an entry expired, evicted by uploads, or a new
    active model). A failure is logged and tried again later; it never reaches a visitor."""
    streamlit_log = logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context")
    quiet = _NoContextWarning(threading.get_ident())
    streamlit_log.addFilter(quiet)
    first = True
    try:
        while True:
            started = time.perf_counter()
            try:
                warmed = warm_up_gradcam()
                took = time.perf_counter() - started
                if not warmed and first:
                    log.info("no shipped samples: the Grad-CAM page has no default image to "
                             "compute in advance")
                elif warmed and (first or took > 0.1):  # the first time, or not only cache hits
                    # bench.gradcam_browser and tests/test_browser.py wait for this line
                    log.info("Grad-CAM page's default image computed in advance in %.2f s",
                             took)
            except (CheckpointError, ImageError, DataError, OSError) as exc:  # a broken model
                log.warning("could not warm the Grad-CAM page up (visitors compute it "
                            "themselves): %s", exc)
            except Exception:  # noqa: BLE001 (a background helper: log, never crash the server)
                log.exception("warming up the Grad-CAM page failed; visitors compute it "
                              "themselves")
            first = False
            time.sleep(WARM_UP_EVERY_S)
    finally:
        streamlit_log.removeFilter(quiet)
