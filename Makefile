# Two commands do all set-up on a fresh machine:
#   make run   - create .venv if missing, install the pinned requirements, start the app on 127.0.0.1
#   make test  - the same set-up, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m skyfall_core serve

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) -m skyfall_core bench raster
