"""Where the shipped assets live."""

from __future__ import annotations

import os

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(PROJECT_ROOT, "assets")
DEFAULT_MODEL = os.path.join(ASSETS, "models", "galaxy_resnet18.pt")
SAMPLE_IMAGES = os.path.join(ASSETS, "samples", "images")
SAMPLE_LABELS = os.path.join(ASSETS, "samples", "labels.csv")
# Where the training page writes runs, and the file naming the app's active model.
RUNS_DIR = os.environ.get("GALAXY_RUNS_DIR", os.path.join(PROJECT_ROOT, "runs"))
MODEL_CARD = os.path.join(ASSETS, "models", "MODEL_CARD.md")
