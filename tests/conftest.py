"""Shared fixtures: generated galaxy-like images, a tree-consistent labels CSV, tiny models."""

from __future__ import annotations

import os

# OpenMP threads that wait for work sleep instead of spinning: the suite runs two or three
# workers, each with torch's threads and tool processes of their own, on as few as 2 cores, and
# spinning threads took the CPU the others needed (measured on 2 cores: 394 s of pytest with the
# default, 337 s with PASSIVE, same tests). Set before torch is imported; tool processes the
# tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import socket
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from galaxy_core.checkpoint import LoadedModel, atomic_save, make_checkpoint
from galaxy_core.config import ModelConfig, Preprocess
from galaxy_core.model import DecisionTreeHead, build_model
from galaxy_core.schema import ANSWER_COLUMNS, CSV_HEADER

# files whose tests start processes (tools, servers, torchrun) and take longest: run first, so
# that under `make test`'s workers the short tests fill the gaps instead of a long one
# starting last
LONG_FIRST = ("test_cli.py", "test_distributed.py", "test_bench.py", "test_publish.py",
              "test_browser.py", "test_runs.py", "test_similarity.py")


def pytest_collection_modifyitems(config, items):
    # only under xdist's workers (a serial run, tests/mutants.py's say, keeps the order it
    # asked for); whole files move, so a module's fixtures are still made once per worker
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    items.sort(key=lambda item: (LONG_FIRST.index(item.path.name)
                                 if item.path.name in LONG_FIRST else len(LONG_FIRST)))


def galaxy_image(seed: int, size: int = 64, elongation: float = 1.0) -> Image.Image:
    """A soft elliptical blob on black sky, with a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
    angle = rng.uniform(0, np.pi)
    xr = x * np.cos(angle) + y * np.sin(angle)
    yr = -x * np.sin(angle) + y * np.cos(angle)
    r2 = (xr / (size / 8)) ** 2 + (yr * elongation / (size / 8)) ** 2
    blob = np.exp(-r2)[..., None] * np.array([255, 220, 170], np.float32)
    noisy = blob + rng.normal(0, 6, blob.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def tree_targets(n: int, seed: int = 0) -> np.ndarray:
    """(n, 37) vote fractions that satisfy the Kaggle tree sums exactly."""
    scores = torch.randn(n, len(ANSWER_COLUMNS), generator=torch.Generator().manual_seed(seed))
    return DecisionTreeHead()(scores * 2).numpy()


def make_galaxy_folder(tmp_path):
    """16 JPEG galaxies named <GalaxyID>.jpg plus a full 37-column labels CSV."""
    images = tmp_path / "images"
    images.mkdir()
    ids = list(range(100000, 100016))
    targets = tree_targets(len(ids))
    for i, galaxy_id in enumerate(ids):
        # elongated blobs for galaxies whose target says "features" so there is signal to learn
        galaxy_image(i, elongation=1.0 + 2.0 * targets[i, 1]).save(images / f"{galaxy_id}.jpg")
    frame = pd.DataFrame(targets, columns=list(ANSWER_COLUMNS))
    frame.insert(0, "GalaxyID", ids)
    labels = tmp_path / "labels.csv"
    frame.to_csv(labels, index=False)
    return {"images": str(images), "labels": str(labels), "ids": ids, "targets": targets,
            "root": tmp_path}


@pytest.fixture
def galaxy_folder(tmp_path):
    return make_galaxy_folder(tmp_path)


def make_loaded(head="plain", image_size=32, crop_fraction=1.0, trained=ANSWER_COLUMNS):
    torch.manual_seed(0)
    net = build_model(ModelConfig(head=head)).eval()
    return LoadedModel(net=net, preprocess=Preprocess(image_size=image_size,
                                                      crop_fraction=crop_fraction),
                       trained_columns=tuple(trained), meta={})


@pytest.fixture
def loaded():
    return make_loaded()


@pytest.fixture
def checkpoint_file(tmp_path):
    model = make_loaded(head="tree", trained=ANSWER_COLUMNS[:17])
    path = tmp_path / "model.pt"
    atomic_save(make_checkpoint(model.net, model.preprocess, model.trained_columns, epoch=1,
                                metrics={"best": {}}, history=[], data={}, train_config={}),
                path)
    return str(path)


def free_port() -> int:
    """A free TCP port on loopback, for a test server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, seconds: float = 90) -> None:
    """Wait for a Streamlit server at ``url`` to answer its health check."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the server at {url} did not start within {seconds:.0f} s")


assert CSV_HEADER[0] == "GalaxyID"
