"""The datasets the app may read: an allow-list, picked by name, never by a visitor's path.

The shipped sample galaxies are always there. An admin adds more in ``GALAXY_DATASETS``
(or Streamlit secrets' ``[datasets]`` table) as ``name=folder`` pairs separated by ``;``::

    GALAXY_DATASETS="Kaggle sample=/data/galaxyzoo_sample;DECaLS cut-outs=/data/decals"

Each folder is a *dataset root* in the Kaggle layout: images in ``images/`` (or in the root
itself) named ``<GalaxyID>.jpg``, and labels in ``labels.csv`` (or the one ``.csv`` file in the
root; none makes an unlabelled dataset). An admin may also type a path on a page; it is used
only after ``resolve_under`` proved it lies inside one of these roots (after resolving ``..``
and symbolic links), so no page can read the rest of the server.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass

from . import paths

log = logging.getLogger(__name__)

DATASETS_ENV = "GALAXY_DATASETS"
SAMPLES_NAME = "Shipped samples"


class DatasetError(ValueError):
    """A dataset setting or path that cannot be used, with a message fit to show an admin."""


@dataclass(frozen=True)
class Dataset:
    name: str
    root: str  # the folder the admin configured; every path below lies inside it
    images: str  # folder of <GalaxyID>.jpg
    labels: str  # labels CSV, "" when the dataset has none

    @property
    def labelled(self) -> bool:
        return bool(self.labels)


def dataset_at(name: str, root: str) -> Dataset:
    """The dataset in folder ``root`` laid out as the module docstring says."""
    root = os.path.realpath(root)
    if not os.path.isdir(root):
        raise DatasetError(f"dataset {name!r}: folder not found")

    def inside(path):  # resolved, and only if a symbolic link does not lead out of the root
        resolved = os.path.realpath(path)
        return resolved if os.path.commonpath([resolved, root]) == root else ""

    images = inside(os.path.join(root, "images")) if os.path.isdir(
        os.path.join(root, "images")) else root
    images = images or root
    labels = os.path.join(root, "labels.csv")
    if not os.path.isfile(labels):
        csvs = sorted(glob.glob(os.path.join(root, "*.csv")))
        labels = csvs[0] if len(csvs) == 1 else ""
    labels = inside(labels) if labels else ""
    return Dataset(name=name, root=root, images=images, labels=labels)


def shipped_samples() -> Dataset:
    return Dataset(name=SAMPLES_NAME, root=os.path.dirname(paths.SAMPLE_IMAGES),
                   images=paths.SAMPLE_IMAGES, labels=paths.SAMPLE_LABELS)


def parse_setting(setting: str | None) -> list[tuple[str, str]]:
    """``"a=/x;b=/y"`` -> [("a", "/x"), ("b", "/y")]; a malformed entry is skipped and logged."""
    pairs = []
    for entry in (setting or "").split(";"):
        if not entry.strip():
            continue
        name, sep, folder = entry.partition("=")
        if not sep or not name.strip() or not folder.strip():
            log.warning("%s: entry %r is not name=folder; skipped", DATASETS_ENV, entry.strip())
            continue
        pairs.append((name.strip(), folder.strip()))
    return pairs


def configured(setting: str | None = None, extra: dict | None = None) -> list[Dataset]:
    """The shipped samples, then every configured dataset whose folder exists, by name.

    ``setting`` is ``GALAXY_DATASETS``'s value (read from the environment when None); ``extra``
    maps names to folders (Streamlit secrets' ``[datasets]`` table). A name is used once."""
    if setting is None:
        setting = os.environ.get(DATASETS_ENV, "")
    found = [shipped_samples()]
    for name, folder in parse_setting(setting) + list((extra or {}).items()):
        if any(d.name == name for d in found):
            log.warning("dataset name %r is configured twice; the first is kept", name)
            continue
        try:
            found.append(dataset_at(name, folder))
        except DatasetError as exc:
            log.warning("%s (configured folder %s); skipped", exc, folder)
    return found


def by_name(datasets: list[Dataset], name: str) -> Dataset:
    for dataset in datasets:
        if dataset.name == name:
            return dataset
    raise DatasetError(f"no dataset named {name!r}; the datasets are "
                       f"{', '.join(repr(d.name) for d in datasets)}")


def resolve_under(datasets: list[Dataset], path: str, want: str = "any") -> str:
    """``path`` resolved (``..`` and symbolic links followed), refused unless it lies inside the
    root of one of ``datasets``. ``want``: "file", "dir" or "any". The message never says
    what, if anything, exists outside the roots."""
    if not path or not path.strip():
        raise DatasetError("no path given")
    if "\x00" in path:
        raise DatasetError("the path holds a NUL character")
    resolved = os.path.realpath(os.path.expanduser(path.strip()))
    for dataset in datasets:
        root = os.path.realpath(dataset.root)
        if os.path.commonpath([resolved, root]) == root:
            break
    else:
        raise DatasetError("that path lies outside the configured dataset folders; an admin "
                           f"adds folders with {DATASETS_ENV}")
    if want == "file" and not os.path.isfile(resolved):
        raise DatasetError("no such file inside the dataset folders")
    if want == "dir" and not os.path.isdir(resolved):
        raise DatasetError("no such folder inside the dataset folders")
    return resolved
