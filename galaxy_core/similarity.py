"""Similar galaxies: the embedding of a galaxy, the index file that holds a folder's embeddings,
and nearest-neighbour search.

An embedding is the ResNet18's 512 average-pooled features (the input of the head), averaged
over the 8 flips and right-angle rotations (morphology has no orientation), then scaled to unit
length, so the cosine distance between two galaxies is ``1 - dot``.

An index is one ``.npz`` file, read with ``allow_pickle=False`` and written atomically:

- ``vectors``: float16 (N, 512), one unit vector per galaxy (1 KB a galaxy);
- ``galaxy_ids``: unicode (N,), each image's file name without extension;
- ``meta``: a JSON string: the format, the checkpoint's identity (SHA-256 of the file and a
  label naming it), its preprocessing, what the features are, and ``framed``: whether each
  image was framed first (``galaxy_core.framing``, as the Classify page and ``train.predict``
  do; on by default since 2026-12-02, absent and so off in earlier indexes). An index's queries
  are framed as its galaxies were (``framing_of``), so a galaxy's own image finds itself.

One index holds the embeddings of one checkpoint only: adding galaxies with another is refused,
and so is searching it with another model's query vectors.

Search is exact (a matrix product over the whole index) up to ``EXACT_LIMIT`` galaxies; past it,
approximate: an inverted-file index of faiss (optional; built in memory on the first search of a
loaded index and kept with it) proposes k galaxies, whose cosine distances are then computed
exactly. Both are measured by ``bench/similarity.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from . import augment, paths
from .checkpoint import LoadedModel
from .data import DecodeJob, list_images
from .files import replacing
from .framing import FRAMING_BY_DEFAULT, Frame, FramingStats, shipped_stats
from .images import normalize, prepare_framed
from .predict import decoded_batches, galaxy_id_of

log = logging.getLogger(__name__)

FORMAT = "galaxy-zoo-similarity/1"
DIM = 512
FEATURES = (f"ResNet18 average-pooled features ({DIM}), mean of the {augment.TTA_VIEWS} "
            f"flips/right-angle rotations, unit length")
INDEX_DIR_ENV = "GALAXY_INDEX_DIR"
SAVE_EVERY = 10_000  # galaxies embedded between saves, so an interrupted build keeps its work
_ARRAYS = ("vectors", "galaxy_ids", "meta")


class SimilarityError(ValueError):
    """An index, query or setting that cannot be used, with a message fit to show a user."""


# ---- which checkpoint --------------------------------------------------------------------

def file_digest(path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_identity(path) -> dict:
    """What an index records about its checkpoint: the file's SHA-256 (what is compared) and a
    label for messages (the path inside the project, else the file name)."""
    absolute = os.path.abspath(path)
    inside = os.path.commonpath([absolute, paths.PROJECT_ROOT]) == paths.PROJECT_ROOT
    label = os.path.relpath(absolute, paths.PROJECT_ROOT) if inside else os.path.basename(path)
    return {"sha256": file_digest(path), "label": label}


def describe_checkpoint(identity: dict) -> str:
    return f"{identity.get('label', '?')} (sha256 {str(identity.get('sha256', ''))[:12]})"


# ---- embedding ---------------------------------------------------------------------------

class PooledFeatures(nn.Module):
    """The backbone up to its average pool: (B, 3, S, S) -> (B, 512)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.body = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool,
                                  backbone.layer1, backbone.layer2, backbone.layer3,
                                  backbone.layer4, backbone.avgpool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(x), 1)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (float32); an all-zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Embedder:
    """Turns images into embeddings with one checkpoint's features (a BatchNorm-folded,
    channels-last copy of its backbone, used one request at a time)."""

    def __init__(self, loaded: LoadedModel, identity: dict | None = None):
        if identity is None:
            if not loaded.path:
                raise ValueError("the model has no file, so its identity must be given")
            identity = checkpoint_identity(loaded.path)
        self.loaded, self.identity = loaded, identity
        self.preprocess = loaded.preprocess
        features = PooledFeatures(copy.deepcopy(loaded.net.backbone)).eval()
        self.features = fuse(features, inplace=False).to(memory_format=torch.channels_last)
        self.lock = threading.Lock()

    @torch.inference_mode()
    def embed_tensor(self, images_uint8: torch.Tensor) -> np.ndarray:
        """uint8 (B, 3, S, S) preprocessed images -> float32 (B, 512) unit vectors."""
        with self.lock:
            device = next(self.features.parameters()).device
            batch = normalize(images_uint8.to(device), self.preprocess)
            batch = batch.contiguous(memory_format=torch.channels_last)
            pooled = torch.stack([self.features(view).float()
                                  for view in augment.dihedral_views(batch)]).mean(0)
        return unit_rows(pooled.cpu().numpy())

    def embed_files(self, sources, names=None, batch_size: int = 32, workers: int = 1,
                    on_progress=None, framing: FramingStats | None = None):
        """Embed images (paths, or bytes with ``names``) -> (kept, vectors (M, 512), errors):
        ``kept`` indexes the inputs that could be read, ``errors`` is (name, message) of the
        others. ``framing``: frame each image first (None: as it is)."""
        sources = list(sources)
        names = list(names) if names is not None else [str(s) for s in sources]
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        job = DecodeJob(sources, self.preprocess.image_size, self.preprocess.crop_fraction, names,
                        framing=framing)
        rows, kept, errors, done = [], [], [], 0
        if on_progress is not None and sources:
            on_progress(0, len(sources))
        for images, index, failures, _, _ in decoded_batches(job, batch_size, workers):
            good = [i for i, e in enumerate(failures) if not e]
            errors += [(names[index[i]], e) for i, e in enumerate(failures) if e]
            if good:
                rows.append(self.embed_tensor(images[good]))
                kept += [index[i] for i in good]
            done += len(index)
            if on_progress is not None:
                on_progress(done, len(sources))
        vectors = np.concatenate(rows) if rows else np.zeros((0, DIM), np.float32)
        return kept, vectors, errors

    def embed_one(self, source, name: str | None = None,
                  framing: FramingStats | None = None) -> tuple[np.ndarray, Frame | None]:
        """One image (path or bytes) -> ((512,), the frame it was cut with: None without
        ``framing``). Raises ``ImageError`` when it cannot be read."""
        image, frame = prepare_framed(source, self.preprocess.image_size,
                                      self.preprocess.crop_fraction, name, framing)
        return self.embed_tensor(image.unsqueeze(0))[0], frame


# ---- the index -----------------------------------------------------------------------------

@dataclass
class SimilarityIndex:
    """Galaxies and their unit vectors (kept as float32 in memory, stored as float16)."""

    galaxy_ids: np.ndarray  # (N,) str
    vectors: np.ndarray  # (N, 512) float32, unit rows
    meta: dict
    _positions: dict | None = field(default=None, repr=False)
    _approximate: object = field(default=None, repr=False, compare=False)  # faiss index, cached
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.galaxy_ids)

    @property
    def checkpoint(self) -> dict:
        return self.meta["checkpoint"]

    def position(self, galaxy_id) -> int | None:
        if self._positions is None:
            self._positions = {g: i for i, g in enumerate(self.galaxy_ids.tolist())}
        return self._positions.get(str(galaxy_id))

    def vector_of(self, galaxy_id) -> np.ndarray:
        i = self.position(galaxy_id)
        if i is None:
            raise SimilarityError(f"GalaxyID {galaxy_id} is not in the index "
                                  f"({len(self)} galaxies)")
        return self.vectors[i]


def new_index(identity: dict, preprocess, framed: bool = False) -> SimilarityIndex:
    meta = {"format": FORMAT, "checkpoint": dict(identity),
            "preprocess": dataclasses.asdict(preprocess), "features": FEATURES, "dim": DIM,
            "framed": bool(framed)}
    return SimilarityIndex(np.zeros(0, dtype="<U1"), np.zeros((0, DIM), np.float32), meta)


def with_added(index: SimilarityIndex, galaxy_ids, vectors: np.ndarray) -> SimilarityIndex:
    """A new index holding ``index``'s galaxies then these (none of which it may hold)."""
    galaxy_ids = [str(g) for g in galaxy_ids]
    if vectors.shape != (len(galaxy_ids), DIM):
        raise ValueError(f"expected ({len(galaxy_ids)}, {DIM}) vectors, got {vectors.shape}")
    repeated = [g for g in galaxy_ids if index.position(g) is not None]
    if repeated or len(set(galaxy_ids)) != len(galaxy_ids):
        raise ValueError(f"GalaxyID {(repeated or galaxy_ids)[0]} would be indexed twice")
    ids = np.concatenate([index.galaxy_ids.astype(str), np.array(galaxy_ids, dtype=str)])
    return SimilarityIndex(ids, np.concatenate([index.vectors, unit_rows(vectors)]),
                           dict(index.meta))


def framing_of(index: SimilarityIndex) -> FramingStats | None:
    """The framing ``index``'s galaxies were embedded with, which its queries must share (None:
    as they are)."""
    return shipped_stats() if index.meta.get("framed") else None


def frames_unlike_default(index: SimilarityIndex) -> bool:
    """True for an index built before indexes framed their galaxies (or with ``--no-frame``)
    while framing is on by default: its searches do not frame an upload as Classify does."""
    return FRAMING_BY_DEFAULT and not index.meta.get("framed")


def check_checkpoint(index: SimilarityIndex, identity: dict, where: str = "the index") -> None:
    """Refuse to mix embeddings of two checkpoints (their feature spaces are unrelated)."""
    if index.checkpoint.get("sha256") != identity.get("sha256"):
        raise SimilarityError(
            f"{where} holds embeddings of {describe_checkpoint(index.checkpoint)}, not of "
            f"{describe_checkpoint(identity)}; one index holds one checkpoint's embeddings: "
            f"use that checkpoint, or build a new index")


def save_index(index: SimilarityIndex, path) -> str:
    meta = {**index.meta, "count": len(index),
            "saved": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    with replacing(path, ".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, vectors=index.vectors.astype(np.float16),
                     galaxy_ids=index.galaxy_ids.astype(str), meta=np.array(json.dumps(meta)))
    return os.fspath(path)


def load_index(path) -> SimilarityIndex:
    """Read an index without unpickling anything; ``SimilarityError`` says what is wrong (never
    quoting the file)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SimilarityError(f"index not found: {path}")
    if not zipfile.is_zipfile(path):
        raise SimilarityError(f"{path}: not a similarity index (not a .npz file)")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [name for name in _ARRAYS if name not in arrays.files]
            if missing:
                raise SimilarityError(f"{path}: not a similarity index (no {', '.join(missing)})")
            vectors, ids, meta_text = (arrays[name] for name in _ARRAYS)
    except SimilarityError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        kind = "holds Python objects, which are never unpickled" \
            if "allow_pickle" in str(exc) else "not a readable .npz file"
        raise SimilarityError(f"{path}: not a similarity index ({kind})") from exc
    try:
        meta = json.loads(str(meta_text))
        ok_meta = (isinstance(meta, dict) and meta.get("format") == FORMAT
                   and isinstance(meta.get("checkpoint"), dict) and "sha256" in meta["checkpoint"])
    except (ValueError, TypeError):
        ok_meta = False
    if not ok_meta:
        raise SimilarityError(f"{path}: not a similarity index of this project (format "
                              f"{FORMAT} expected)")
    if (vectors.dtype != np.float16 or vectors.ndim != 2 or vectors.shape[1] != DIM
            or ids.ndim != 1 or ids.dtype.kind != "U" or len(ids) != len(vectors)):
        raise SimilarityError(f"{path}: damaged index (expected float16 ({len(ids)}, {DIM}) "
                              f"vectors and as many GalaxyIDs)")
    if not np.isfinite(vectors).all():
        raise SimilarityError(f"{path}: damaged index (vectors that are not finite numbers)")
    if len(np.unique(ids)) != len(ids):
        raise SimilarityError(f"{path}: damaged index (a GalaxyID appears twice)")
    # renormalised in float32: float16 rounding would leave a galaxy ~1e-3 from itself
    return SimilarityIndex(ids, unit_rows(vectors), meta)


# ---- building ----------------------------------------------------------------------------

def images_to_add(index: SimilarityIndex, image_paths) -> list[str]:
    """The images whose GalaxyID (file name stem) is not in ``index`` yet; of two files with the
    same stem, the first (by name) is taken."""
    chosen, seen = [], set()
    for path in image_paths:
        galaxy_id = galaxy_id_of(path)
        if galaxy_id in seen or index.position(galaxy_id) is not None:
            continue
        seen.add(galaxy_id)
        chosen.append(path)
    return chosen


def update_index(embedder: Embedder, images_dir, out, batch_size: int = 32, workers: int = 1,
                 on_progress=None, framed: bool = FRAMING_BY_DEFAULT, rebuild: bool = False):
    """Embed the images of ``images_dir`` that the index at ``out`` lacks (all of them when
    there is no index yet, or with ``rebuild``) and save it there, every ``SAVE_EVERY`` galaxies
    and at the end (each save replaces the file whole, so a rebuild leaves the old index in use
    until its first save). ``framed``: whether a new index frames its images first (an existing
    one keeps its own choice, so all its galaxies are alike). Returns (index, added, errors); an
    existing index of another checkpoint is refused."""
    index = load_index(out) if os.path.exists(out) and not rebuild else \
        new_index(embedder.identity, embedder.preprocess, framed)
    check_checkpoint(index, embedder.identity, f"the index {out}")
    todo = images_to_add(index, list_images(images_dir))
    added, errors = 0, []
    if on_progress is not None and todo:
        on_progress(0, len(todo))
    for start in range(0, len(todo), SAVE_EVERY):
        chunk = todo[start:start + SAVE_EVERY]
        progress = None if on_progress is None else \
            (lambda done, _total, s=start: on_progress(s + done, len(todo)))
        kept, vectors, failed = embedder.embed_files(chunk, batch_size=batch_size,
                                                     workers=workers, on_progress=progress,
                                                     framing=framing_of(index))
        index = with_added(index, [galaxy_id_of(chunk[i]) for i in kept], vectors)
        added, errors = added + len(kept), errors + failed
        save_index(index, out)
    if not os.path.exists(out):  # an empty folder still leaves an (empty) index to add to
        save_index(index, out)
    return index, added, errors


def index_dir() -> str:
    """Where the app keeps one index per dataset and checkpoint (server side)."""
    return os.environ.get(INDEX_DIR_ENV) or os.path.join(paths.RUNS_DIR, "indexes")


def dataset_index_path(dataset_name: str, identity: dict) -> str:
    """The index file of a configured dataset for one checkpoint: a file name made of the
    dataset's name (letters, digits and dashes only), a digest of the exact name (two names
    that differ only in punctuation get different files) and the checkpoint's digest."""
    readable = re.sub(r"[^a-z0-9]+", "-", dataset_name.lower()).strip("-")[:40] or "dataset"
    name_digest = hashlib.sha256(dataset_name.encode()).hexdigest()[:8]
    return os.path.join(index_dir(), f"{readable}-{name_digest}-{identity['sha256'][:12]}.npz")


# ---- search ----------------------------------------------------------------------------------

# Galaxies up to which search is exact. Measured (bench/similarity.py --scale, 2 cores beside a
# training run): exact costs about 0.2-0.35 ms a query per 1,000 galaxies (48 ms at 100,000,
# 205-344 ms at 1,000,000), so up to here a query stays near 0.1 s and misses nothing, with no
# index to build first (9 s at 100,000, about 1 minute at 1,000,000).
EXACT_LIMIT = 300_000
SEARCH_METHODS = ("auto", "exact", "approximate")
LISTS_PER_SQRT = 2  # inverted lists per square root of the galaxies (faiss advises 4-16 at most)
PROBE_SHARE = 16  # one list in this many is probed per query
TRAIN_PER_LIST = 50  # k-means sample per list (faiss wants at least 39)
KMEANS_ITERATIONS = 10
_missing_faiss_warned = False


def _faiss():
    """The faiss module, or None where it is not installed (it is optional)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def ivf_shape(n: int) -> tuple[int, int]:
    """(inverted lists, lists probed per query) of the approximate index of ``n`` galaxies."""
    lists = max(1, min(round(LISTS_PER_SQRT * math.sqrt(n)), n // TRAIN_PER_LIST))
    return lists, max(1, math.ceil(lists / PROBE_SHARE))


def _build_ivf(faiss, vectors: np.ndarray):
    """An inverted-file index on inner product over (N, 512) unit vectors, stored as float16
    (what the index file holds; distances are recomputed exactly from float32 anyway)."""
    lists, probes = ivf_shape(len(vectors))
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(DIM), DIM, lists,
                                        faiss.ScalarQuantizer.QT_fp16,
                                        faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = KMEANS_ITERATIONS
    sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors),
                                                                lists * TRAIN_PER_LIST),
                                             replace=False)
    ivf.train(vectors[np.sort(sample)])
    ivf.add(vectors)
    ivf.nprobe = probes  # set once, before any search: searches share the index read-only
    return ivf


def approximate_index(index: SimilarityIndex):
    """The faiss index of ``index``: built on first use, then kept with it (one build even when
    sessions search at once). Raises ``SimilarityError`` when faiss is not installed."""
    faiss = _faiss()
    if faiss is None:
        raise SimilarityError("approximate search needs faiss: pip install faiss-cpu==1.15.1 "
                              "(see requirements.txt), or search exactly")
    with index._lock:
        if index._approximate is None:
            start = time.perf_counter()
            index._approximate = _build_ivf(faiss, index.vectors)
            lists, probes = ivf_shape(len(index))
            log.info("approximate index of %d galaxies built in %.1f s (%d lists, %d probed)",
                     len(index), time.perf_counter() - start, lists, probes)
        return index._approximate


def _chosen_approximate(index: SimilarityIndex, method: str):
    """The faiss index to search, or None to search exactly."""
    if method not in SEARCH_METHODS:
        raise SimilarityError(f"search method must be one of {', '.join(SEARCH_METHODS)}, "
                              f"got {method!r}")
    if method == "exact" or len(index) == 0 or (method == "auto" and len(index) <= EXACT_LIMIT):
        return None
    if method == "auto" and _faiss() is None:
        global _missing_faiss_warned
        if not _missing_faiss_warned:
            _missing_faiss_warned = True
            log.warning("faiss is not installed, so the %d galaxies are searched exactly "
                        "(slow past %d): pip install faiss-cpu==1.15.1", len(index), EXACT_LIMIT)
        return None
    return approximate_index(index)


def _exact_candidates(vectors: np.ndarray, queries: np.ndarray, k: int):
    """(B, 512) queries -> the k most similar positions and their similarities, (B, k) each, in
    no particular order."""
    sims = queries @ vectors.T  # (B, N)
    if k < sims.shape[1]:
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        top = np.tile(np.arange(sims.shape[1]), (len(sims), 1))
    return top, np.take_along_axis(sims, top, axis=1)


def _approximate_candidates(ivf, vectors: np.ndarray, queries: np.ndarray, k: int):
    """As ``_exact_candidates``, the positions proposed by ``ivf``; a query whose probed lists
    hold fewer than k galaxies (k near the index's size) is answered exactly instead."""
    _, top = ivf.search(queries, k)  # (B, k), -1 where a list ran out
    sims = np.einsum("bd,bkd->bk", queries, vectors[np.maximum(top, 0)])  # exact cosines
    short = (top < 0).any(axis=1)
    if short.any():
        top[short], sims[short] = _exact_candidates(vectors, queries[short], k)
    return top, sims


def search(index: SimilarityIndex, queries: np.ndarray, k: int, block: int = 256,
           method: str = "auto"):
    """Nearest neighbours by cosine distance: (Q, 512) queries -> (positions, distances), each
    (Q, min(k, N)), nearest first (ties by position in the index). ``method`` "auto" is exact
    up to ``EXACT_LIMIT`` galaxies and approximate past it (exact, with one warning, where faiss
    is missing); "exact" and "approximate" force one."""
    if k < 1:
        raise SimilarityError(f"k must be >= 1, got {k}")
    queries = unit_rows(np.atleast_2d(queries))
    if queries.shape[1] != DIM:
        raise ValueError(f"queries must have {DIM} columns, got {queries.shape[1]}")
    ivf = _chosen_approximate(index, method)  # after the checks: its first build takes a minute
    k = min(k, len(index))
    positions = np.zeros((len(queries), k), np.int64)
    distances = np.zeros((len(queries), k), np.float32)
    for start in range(0, len(queries), block):  # bounds the (block, N) similarity matrix
        chunk = queries[start:start + block]
        top, top_sims = (_exact_candidates(index.vectors, chunk, k) if ivf is None
                         else _approximate_candidates(ivf, index.vectors, chunk, k))
        order = np.lexsort((top, -top_sims), axis=1)
        positions[start:start + block] = np.take_along_axis(top, order, axis=1)
        distances[start:start + block] = 1.0 - np.take_along_axis(top_sims, order, axis=1)
    return positions, np.clip(distances, 0.0, 2.0)
