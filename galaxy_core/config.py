"""Frozen configuration dataclasses shared by the CLIs, the training page and checkpoints.

Each field's ``help`` metadata is the one-line description that ``train.train --help`` shows;
the CLIs derive their flags from these classes (see ``add_dataclass_flags``), so a new field
shows up everywhere at once. Checkpoints store ``dataclasses.asdict`` of them (plain dicts, so
they load with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

HEADS = ("plain", "tree")
AUGMENTS = ("none", "seed", "full", "reframe")
SCHEDULES = ("constant", "onecycle", "cosine")
OPTIMIZERS = ("adam", "adamw")
DEVICES = ("auto", "cpu", "cuda", "mps")
# arithmetic of the forward pass (training and inference); weights always stay float32
PRECISIONS = ("float32", "bfloat16")


def _f(default, help_text, **kwargs):
    return field(default=default, metadata={"help": help_text, **kwargs})


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input; stored with every model so inference matches training."""

    image_size: int = _f(224, "model input size in pixels (square)")
    crop_fraction: float = _f(
        1.0, "centre square to keep before resizing, as a fraction of the shorter side "
        "(the Kaggle winner kept 207 of 424 px, about 0.49)")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in 16..1024, got {self.image_size}")
        if not 0.05 <= self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in 0.05..1.0, got {self.crop_fraction}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))


@dataclass(frozen=True)
class ModelConfig:
    """The network: torchvision ResNet18 with the seed's two-layer head."""

    head: str = _f("plain", "output mode: 'plain' (linear, clipped to [0,1] when predicting) or "
                   "'tree' (per-question probabilities scaled by the parent answer)",
                   choices=HEADS)
    dropout: float = _f(0.5, "dropout between the two head layers")
    pretrained: bool = _f(False, "start from torchvision's ImageNet weights (must already be in "
                          "the torch cache; nothing is downloaded)")
    freeze_backbone: bool = _f(False, "train only the head")

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults follow the seed (224 px, Adam 1e-3, batch 32, MSE)."""

    images: str = _f("", "folder of <GalaxyID>.jpg images", required=True)
    labels: str = _f("", "labels CSV: GalaxyID plus any of the 37 Kaggle answer columns",
                     required=True)
    out: str = _f("runs/latest", "output folder for checkpoints, history and plots")
    overwrite: bool = _f(False, "replace the run already in --out (its best.pt, last.pt and "
                         "history.json); without it a new run into such a folder is refused")
    epochs: int = _f(10, "number of epochs")
    batch_size: int = _f(32, "images per step")
    lr: float = _f(1e-3, "peak learning rate")
    optimizer: str = _f("adam", "'adam' (weight decay added to the gradient, as in the seed) or "
                        "'adamw' (weight decay applied to the weights, decoupled from the "
                        "gradient)", choices=OPTIMIZERS)
    weight_decay: float = _f(0.0, "weight decay (how it acts depends on --optimizer)")
    schedule: str = _f("constant", "learning-rate schedule", choices=SCHEDULES)
    subset: int = _f(0, "use only this many galaxies (0 = all)")
    subset_mode: str = _f("first", "how to pick the subset", choices=("first", "random"))
    val_fraction: float = _f(0.2, "fraction held out for validation (deterministic by seed)")
    train_fraction: float = _f(1.0, "use only this share of the training galaxies (seeded; the "
                               "validation galaxies stay the same), for learning curves")
    seed: int = _f(0, "random seed for the split, initialisation and augmentation")
    image_size: int = _f(224, "model input size in pixels")
    crop_fraction: float = _f(1.0, "centre crop before resizing (fraction of the frame)")
    augment: str = _f("seed", "'seed' = hflip + rotations up to 20 deg; 'full' = any rotation, "
                      "both flips, mild zoom; 'reframe' = 'full' with half the images re-framed "
                      "(zoom 0.5-2x, shifts, sky beyond the frame); 'none'", choices=AUGMENTS)
    head: str = _f("plain", "output head", choices=HEADS)
    dropout: float = _f(0.5, "dropout in the head")
    pretrained: bool = _f(False, "start from ImageNet weights in the torch cache")
    freeze_backbone: bool = _f(False, "train only the head")
    resume: str = _f("", "a run's last.pt to continue from (its epoch, weights, optimiser and "
                     "schedule; only with that run's own settings), or 'auto': --out's last.pt "
                     "when there is one, else start fresh")
    init_from: str = _f("", "checkpoint whose weights start a new run (fine-tuning: a fresh "
                        "optimiser, schedule and epoch count; any image size; its output head "
                        "must match --head); with --resume auto, an interrupted fine-tune "
                        "continues instead")
    device: str = _f("auto", "cuda, mps, cpu or auto (best available)", choices=DEVICES)
    precision: str = _f("float32", "'bfloat16' runs the forward pass under bfloat16 autocast "
                        "(weights, loss and validation stay float32): epochs about 1.7x faster "
                        "where the CPU or GPU computes bfloat16 natively", choices=PRECISIONS)
    workers: int = _f(2, "processes that decode images into the cache (0 = in this process)")
    cache_dir: str = _f("", "folder for the decoded-image cache (reused across runs); "
                        "empty = keep it in memory only")

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got "
                                           f"{self.optimizer!r}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.subset >= 0, f"subset must be >= 0, got {self.subset}"),
            (0.0 <= self.val_fraction < 1.0,
             f"val_fraction must be in [0, 1), got {self.val_fraction}"),
            (0.0 < self.train_fraction <= 1.0,
             f"train_fraction must be in (0, 1], got {self.train_fraction}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.augment in AUGMENTS, f"augment must be one of {AUGMENTS}"),
            (self.device in DEVICES, f"device must be one of {DEVICES}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got "
                                           f"{self.precision!r}"),
            (not (self.init_from and self.resume not in ("", "auto")),
             "init_from and resume exclude each other: resume continues a run, init_from "
             "starts a new one from a checkpoint's weights (with resume 'auto', init_from "
             "starts the run only when --out holds none yet)"),
            (not (self.init_from and self.pretrained),
             "init_from and pretrained exclude each other: both choose the starting weights"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.preprocess()  # validates image_size and crop_fraction
        self.model_config()

    def preprocess(self) -> Preprocess:
        return Preprocess(image_size=self.image_size, crop_fraction=self.crop_fraction)

    def model_config(self) -> ModelConfig:
        return ModelConfig(head=self.head, dropout=self.dropout, pretrained=self.pretrained,
                           freeze_backbone=self.freeze_backbone)


def field_defaults(cls) -> dict:
    """Each field of dataclass ``cls`` with its default value."""
    return {f.name: f.default for f in dataclasses.fields(cls)}


def field_help(cls) -> dict:
    """Each field of dataclass ``cls`` with its one-line help ("" where it has none)."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def add_dataclass_flags(parser: argparse.ArgumentParser, cls) -> None:
    """Add one ``--flag`` per field of ``cls`` (underscores become dashes)."""
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata:
            continue
        flag = "--" + f.name.replace("_", "-")
        kwargs = {"help": f.metadata["help"], "dest": f.name}
        if f.type in ("bool", bool):
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["default"] = f.default
        else:
            kwargs["type"] = type(f.default)
            kwargs["default"] = f.default
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            if f.metadata.get("required"):
                kwargs["required"] = True
                kwargs.pop("default")
        if not f.metadata.get("required"):
            kwargs["help"] += f" (default: {f.default})"
        parser.add_argument(flag, **kwargs)


def from_namespace(cls, namespace: argparse.Namespace):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in vars(namespace).items() if k in names})
