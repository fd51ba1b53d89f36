# Two commands for a fresh machine: `make run` (the app) and `make test` (all tests).
# Each creates .venv and installs requirements.txt on first use (and when it changes).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
ADDRESS ?= 127.0.0.1

.PHONY: run test bench model browser clean-venv

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
