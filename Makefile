# Two commands for a fresh machine: `make run` (the app) and `make test` (all tests).
# Each creates .venv and installs requirements.txt on first use (and when it changes).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
ADDRESS ?= 127.0.0.1

.PHONY: run test bench model compare browser clean-venv

# The real sample (4000 Kaggle galaxies, 17 answer columns); see assets/models/MODEL_CARD.md
DATA ?= ../shared/data/galaxyzoo_sample
LABELS := $(DATA)/labels_partial.csv
SHIPPED := assets/models/galaxy_resnet18.pt
RECIPE := --epochs 45 --image-size 128 --crop-fraction 0.5 --augment full --head tree \
	--schedule onecycle --dropout 0.25 --lr 1e-3 --batch-size 32 --seed 0

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) serve.py --server.address $(ADDRESS) --server.port $(PORT)

test: $(STAMP) browser
	$(PY) -m pytest -q -ra

# Debian's Chromium for the real-browser test; best effort (the test skips, saying why, without it)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& echo "installing Debian's chromium for the browser test..." \
		&& apt-get update -qq >/dev/null 2>&1 \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } \
		|| echo "chromium not installed: the real-browser test will be skipped"

clean-venv:
	rm -rf $(VENV)

# Reproduce the shipped model from the real sample (seeded): train, export, evaluate, card.
model: $(STAMP)
	$(PY) -m train.train --images $(DATA)/images --labels $(LABELS) --out runs/shipped \
		--cache-dir .cache/decoded $(RECIPE)
	$(PY) -m train.export --checkpoint runs/shipped/best.pt --out $(SHIPPED) --half
	$(PY) -m train.evaluate --checkpoint $(SHIPPED) --images $(DATA)/images --labels $(LABELS) \
		--split val --json assets/models/evaluation.json --plots assets/models
	$(PY) -m train.evaluate --checkpoint $(SHIPPED) --images $(DATA)/images --labels $(LABELS) \
		--split val --tta --json assets/models/evaluation_tta.json
	$(PY) -m train.model_card --checkpoint $(SHIPPED) --evaluation assets/models/evaluation.json \
		--evaluation-tta assets/models/evaluation_tta.json --variants assets/models/variants.json \
		--command "make model" --hardware "a 2-core x86-64 CPU (no GPU)" --out assets/models/MODEL_CARD.md

# The recipe comparison behind the model card's variants table (reduced budget).
compare: $(STAMP)
	$(PY) -m train.compare --images $(DATA)/images --labels $(LABELS) --out runs/compare \
		--cache-dir .cache/decoded
	cp runs/compare/variants.json assets/models/variants.json

# Speed and memory ratios on this machine (prints a table, writes bench/results/latest.json).
bench: $(STAMP)
	$(PY) -m bench.run
