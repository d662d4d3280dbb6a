# Two commands do all set-up on a fresh machine:
#   make run   - create .venv if missing, install the locked requirements and this package (editable),
#                start the app on 127.0.0.1
#   make test  - the same set-up, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements.txt -e .
	touch $(STAMP)

# On a CUDA machine with nvcc, build gsplat's kernels before the first job (about a minute, once).
run: $(STAMP)
	-@command -v nvcc >/dev/null 2>&1 && $(PY) -c "import torch, sys; sys.exit(not torch.cuda.is_available())" \
	  && $(PY) -m skyfall_core device || true
	$(PY) -m skyfall_core serve

# The browser end-to-end test drives Debian's chromium (/usr/bin/chromium; never a downloaded browser).
# When it is missing and apt-get can install it, install it; otherwise that one test is skipped.
# The 3D Tiles/splat cross-check tools come from npm (tools/package-lock.json: the Khronos glTF
# validator and PlayCanvas splat-transform); lint runs first.
test: $(STAMP)
	-@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji) \
	  >/dev/null 2>&1 || echo "note: chromium could not be installed with apt-get; the browser test will be skipped"
	-@! command -v npm >/dev/null 2>&1 || test tools/node_modules/.package-lock.json -nt tools/package-lock.json \
	  || npm ci --prefix tools --no-audit --no-fund >/dev/null 2>&1 \
	  || echo "note: npm ci --prefix tools failed; the glTF validator and splat-transform tests will be skipped"
	$(PY) -m ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -ra --durations=15

bench: $(STAMP)
	$(PY) -m skyfall_core bench raster
