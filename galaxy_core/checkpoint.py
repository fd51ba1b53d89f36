"""Checkpoints: plain dicts, written atomically, read with ``weights_only=True``.

A checkpoint holds the weights, the model config, the preprocessing, the answer columns that
had training targets, metrics, history, epochs, a data description, library versions and a
date. A run's ``last.pt`` also holds its optimiser and schedule, so the run can be resumed, and
only as the same run (``read_run_to_resume``). The seed's formats (``{"model_state_dict": ...}``
or a bare state dict, as in ``best_model.pth``) load too, as a plain-head model with the seed's
preprocessing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import pickle
import platform
import re
import threading
from dataclasses import dataclass, field

import torch
import torchvision

from .config import ModelConfig, Preprocess, TrainConfig, field_defaults
from .files import replacing
from .model import GalaxyNet, inference_copy
from .schema import ANSWER_COLUMNS, NUM_ANSWERS, check_columns
from .uncertainty import Calibration

log = logging.getLogger(__name__)

FORMAT = "galaxy-zoo-resnet18/1"
MAX_CHECKPOINT_BYTES = 500 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint, with a message that says what is wrong."""


@dataclass
class LoadedModel:
    """A model ready for inference plus what a user needs to know about it."""

    net: GalaxyNet
    preprocess: Preprocess
    trained_columns: tuple[str, ...]
    meta: dict
    path: str = ""
    calibration: Calibration | None = None  # its per-answer intervals, if it was calibrated
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _fast_net: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def fast_net(self) -> torch.nn.Module:
        """BatchNorm-folded copy for prediction, built on first use (see ``inference_copy``)."""
        if self._fast_net is None:
            self._fast_net = inference_copy(self.net)
        return self._fast_net

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def untrained_columns(self) -> tuple[str, ...]:
        return tuple(c for c in ANSWER_COLUMNS if c not in self.trained_columns)


def save_synced(obj, path) -> None:
    """``torch.save`` to ``path`` and wait until the bytes are on disk."""
    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_save(obj, path) -> None:
    """``save_synced`` to a temporary file beside ``path``, then rename over it."""
    with replacing(path, ".pt") as tmp:
        save_synced(obj, tmp)


def half_precision_state(state: dict) -> dict:
    """Store the residual blocks' convolution weights (95% of the bytes) as float16 and keep
    the stem, BatchNorm, biases and the head in float32: storing the head in float16 too
    moved predictions by up to 1.7e-3, this keeps them within 2e-4 (measured on the shipped
    model's 800 validation galaxies)."""
    def compact(key, value):
        in_blocks = ".layer" in f".{key}" and value.dim() == 4
        return value.half() if value.is_floating_point() and in_blocks else value
    return {k: compact(k, v) for k, v in state.items()}


def library_versions() -> dict:
    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


def make_checkpoint(net: GalaxyNet, preprocess: Preprocess, trained_columns, *, epoch: int,
                    metrics: dict, history: list, data: dict, train_config: dict,
                    optimizer_state=None, scheduler_state=None, half: bool = False,
                    run_id: str = "", earlier_stages: list | None = None) -> dict:
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    if half:
        state = half_precision_state(state)
    return {
        "format": FORMAT,
        "state_dict": state,
        "model_config": dataclasses.asdict(net.config),
        "preprocess": dataclasses.asdict(preprocess),
        "trained_columns": list(trained_columns),
        "answer_columns": list(ANSWER_COLUMNS),
        "epoch": epoch,
        "metrics": metrics,
        "history": history,
        "data": data,
        "train_config": train_config,
        "run_id": run_id,  # the same in every checkpoint of one training run
        # the runs these weights were fine-tuned from, first to last (training_stages)
        "earlier_stages": list(earlier_stages or []),
        "optimizer_state": optimizer_state,
        "scheduler_state": scheduler_state,
        "versions": library_versions(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def stage_of(meta: dict) -> dict:
    """One training run as a stage of a model's making: its recipe, the epoch it ended at, its
    epoch time, split and device (runs saved before 2026-12-01 lack the device), the library
    versions and date it was saved with."""
    data = meta.get("data") or {}
    return {"train_config": meta.get("train_config") or {}, "epoch": meta.get("epoch"),
            "epoch_s": sum(h.get("epoch_s", 0) for h in meta.get("history") or []),
            "data": {k: data.get(k) for k in ("galaxies", "train_galaxies", "val_galaxies",
                                              "split_seed", "device", "world_size")},
            "versions": meta.get("versions") or {}, "created": meta.get("created")}


def training_stages(meta: dict) -> list[dict]:
    """Every training run that made a checkpoint's weights, first to last: the runs it was
    fine-tuned from (kept through every later fine-tune), then its own."""
    return list(meta.get("earlier_stages") or []) + [stage_of(meta)]


def epochs_before_last_stage(stages: list[dict]) -> int:
    """The epochs of every stage before the last one (0 for a model trained in one run)."""
    return sum(stage.get("epoch") or 0 for stage in stages[:-1])


def trained_on_reframed(stages: list[dict]) -> bool:
    """Whether any stage trained on re-framed images (``--augment reframe``)."""
    return any(stage["train_config"].get("augment") == "reframe" for stage in stages)


def read_checkpoint(path) -> dict:
    """Load the raw dict safely; raise ``CheckpointError`` naming the problem."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path}: {size / 1e6:.0f} MB is too large for a ResNet18 checkpoint")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        culprit = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if culprit:
            raise CheckpointError(
                f"{path}: refused to load: it holds a Python object ({culprit.group(1)}) beyond "
                f"tensors and plain data, and such files are never unpickled for safety") from exc
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint") from exc
    except Exception as exc:  # garbage makes torch.load fail in many ways (IndexError, ...)
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail})") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, got {type(raw).__name__}")
    return raw


def _seed_format(raw: dict) -> dict | None:
    """Return a state dict when ``raw`` is in the seed's format, else None."""
    state = raw.get("model_state_dict", raw)
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    return None


def load_checkpoint(path, device: torch.device | str = "cpu") -> LoadedModel:
    raw = read_checkpoint(path)
    if raw.get("format") == FORMAT:
        try:
            config = ModelConfig(**{**raw["model_config"], "pretrained": False})
            preprocess = Preprocess(**raw["preprocess"])
            trained = tuple(check_columns(raw["trained_columns"]))
            state = raw["state_dict"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: damaged checkpoint metadata ({exc})") from exc
        if list(raw.get("answer_columns", [])) != list(ANSWER_COLUMNS):
            raise CheckpointError(f"{path}: made for a different answer schema "
                                  f"({len(raw.get('answer_columns', []))} columns, expected "
                                  f"{NUM_ANSWERS} Kaggle columns in order)")
        meta = {k: v for k, v in raw.items()
                if k not in ("state_dict", "optimizer_state", "scheduler_state")}
        try:
            calibration = (Calibration.from_dict(raw["intervals"]) if "intervals" in raw
                           else None)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
    else:
        state = _seed_format(raw)
        if state is None:
            raise CheckpointError(f"{path}: not a Galaxy Zoo checkpoint (format "
                                  f"{raw.get('format', 'unknown')!r}, keys {sorted(raw)[:6]})")
        state = {k if k.startswith("backbone.") else f"backbone.{k}": v for k, v in state.items()}
        config, preprocess, trained = ModelConfig(), Preprocess(), tuple(ANSWER_COLUMNS)
        calibration = None
        meta = {"format": "seed", "note": "seed-format weights: no metadata, seed preprocessing "
                "(224 px, no crop) assumed, all 37 answers assumed trained"}
    with torch.device("meta"):  # no random initialisation (0.1 s) for weights about to be read
        net = GalaxyNet(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise CheckpointError(f"{path}: weights do not fit a ResNet18 with a 37-answer head "
                              f"({first[:300]})") from exc
    net.eval().to(device)
    return LoadedModel(net=net, preprocess=preprocess, trained_columns=trained, meta=meta,
                       path=os.path.abspath(path), calibration=calibration)


def read_resume_state(path) -> dict:
    """Everything ``fit`` needs to resume: the raw dict of one of our own checkpoints."""
    raw = read_checkpoint(path)
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: only checkpoints written by this project can be resumed")
    return raw


# TrainConfig fields a resumed run may set anew: where files are read and written (and whether
# another run's files there may be replaced), where and in which arithmetic it computes, and how
# the first run chose its starting weights (resuming loads the checkpoint's). Every other field
# defines the run, so it must match the checkpoint's record.
RESUME_MAY_CHANGE = frozenset({"out", "resume", "images", "labels", "device", "precision",
                               "workers", "cache_dir", "init_from", "pretrained", "overwrite"})


def recorded_config(state: dict) -> dict:
    """The TrainConfig a checkpoint's run was trained with, as a dict; a field the record
    predates counts as that field's default."""
    return {**field_defaults(TrainConfig), **(state.get("train_config") or {})}


def resume_differences(config: TrainConfig, state: dict) -> list[str]:
    """How ``config`` differs from the run recorded in checkpoint ``state``, one
    "field: recorded -> asked" line per field outside ``RESUME_MAY_CHANGE``. The epoch count may
    grow only under a constant learning rate: a schedule is laid out over the run's length."""
    recorded, asked = recorded_config(state), dataclasses.asdict(config)
    may_change = RESUME_MAY_CHANGE | ({"epochs"} if config.schedule == "constant" else set())
    return [f"{name}: {recorded.get(name)!r} -> {value!r}" for name, value in asked.items()
            if name not in may_change and recorded.get(name) != value]


def resume_path(config: TrainConfig) -> str:
    """The checkpoint to resume from: ``config.resume``, where 'auto' means the run folder's own
    ``last.pt`` when there is one (an interrupted run continues) and nothing otherwise."""
    if config.resume != "auto":
        return config.resume
    last = os.path.join(config.out, "last.pt")
    return last if os.path.isfile(last) else ""


def resumed_config(path: str, **changes) -> TrainConfig:
    """The config that continues the run whose ``last.pt`` is ``path``: the settings it
    recorded, with ``changes`` only to fields in ``RESUME_MAY_CHANGE`` (the new output folder,
    say)."""
    refused = sorted(set(changes) - RESUME_MAY_CHANGE)
    if refused:
        raise ValueError(f"a resumed run keeps its own {', '.join(refused)}")
    recorded = recorded_config(read_resume_state(path))
    return TrainConfig(**{**recorded, "overwrite": False, **changes, "resume": path,
                          "init_from": "", "pretrained": False})


def read_run_to_resume(path: str, config: TrainConfig) -> dict:
    """The checkpoint ``fit`` resumes from, refused (``CheckpointError``) unless it is a run's
    ``last.pt`` and ``config`` asks for that same run."""
    state = read_resume_state(path)
    if not state.get("optimizer_state"):
        raise CheckpointError(f"{path}: holds no optimiser state (a best.pt or an exported "
                              f"model); resume from the run's last.pt")
    differences = resume_differences(config, state)
    if differences:
        raise CheckpointError(f"{path}: was trained with other settings than this run asks "
                              f"for ({'; '.join(differences)}); resume with its own settings, "
                              f"or start a new run in another folder")
    return state
