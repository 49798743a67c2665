# Two commands do all set-up on a fresh machine:
#   make demo   - build musemo into .venv and run the demo on the built-in recording
#   make test   - build musemo into .venv and run the test suite
# For working on musemo:
#   make dev        - an editable install in .venv (rebuilds the C++ engine on import)
#   make test-fast  - the tests that neither train, export nor kill processes (~1 min)
#   make lint       - ruff, in a venv of its own (no torch needed)
#   make model DATA4Q=...  - rebuild the shipped model from the 4Q data set
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.musemo-installed
EXTRAS := dev,train,export,tflite,live,formats,ray
LINT_VENV := .venv-lint
# The abandoned tflite_runtime wheel (numpy < 2), apart from the venv: the tests run the
# edge runtime's fallback to it for real.
TFLITE_RUNTIME := $(VENV)/tflite-runtime-numpy1
# what the build reads: the tracked files (or, outside a git checkout, every file) of these
BUILD_INPUTS := pyproject.toml CMakeLists.txt cpp src
SOURCES := $(shell git ls-files $(BUILD_INPUTS) 2>/dev/null || find $(BUILD_INPUTS) -type f -not -path '*/__pycache__/*')

.PHONY: demo test test-fast dev install lint bench sdist clean model

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir ".[$(EXTRAS)]"
	rm -f $(VENV)/.musemo-editable
	touch $(STAMP)

$(STAMP): $(SOURCES)
	@if [ -f $(VENV)/.musemo-editable ]; then touch $@; exit 0; fi; \
	$(MAKE) --no-print-directory install

demo: $(STAMP)
	$(VENV)/bin/musemo demo --out demo_out

$(TFLITE_RUNTIME): | $(STAMP)
	rm -rf $@.partial
	$(PY) -m pip install --quiet --no-cache-dir --no-warn-conflicts --target $@.partial \
		"numpy<2" "tflite-runtime==2.14.*" && mv $@.partial $@ \
		|| echo "note: tflite_runtime not installed; its fallback test will skip"

# musicnn's pretrained weights (its pip wheel, 29 MB) into musemo's cache, once
test: $(STAMP) $(TFLITE_RUNTIME)
	$(VENV)/bin/musemo fetch musicnn
	$(PY) -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/musemo fetch musicnn
	$(PY) -m pytest -m "not slow"

# Editable: the package is imported from src/, and importing it rebuilds the C++ engine
# in build/editable when a source changed (scikit-build-core, without build isolation, so
# the build tools come from the dev extra).
dev:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet scikit-build-core pybind11 cmake ninja
	$(PY) -m pip install --quiet --no-build-isolation -Ceditable.rebuild=true \
		-Ceditable.verbose=false -Cbuild-dir=build/editable -e ".[$(EXTRAS)]"
	touch $(VENV)/.musemo-editable $(STAMP)

$(LINT_VENV)/bin/ruff:
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --no-cache-dir "ruff>=0.17,<0.18"

lint: $(LINT_VENV)/bin/ruff
	$(LINT_VENV)/bin/ruff check src tests benchmarks export
	$(LINT_VENV)/bin/ruff format --check src tests benchmarks export

# The model that ships (src/musemo/models/happy-sad.int8.onnx) and its report
# (docs/default-model.md), rebuilt from the 4Q audio emotion set (~17 min on one core):
#   make model DATA4Q=/path/to/4q    (the folder holding MER_audio_taffc_dataset/)
model: $(STAMP)
	@test -n "$(DATA4Q)" || { echo "make model needs DATA4Q=FOLDER: the 4Q audio emotion set" \
		"(the folder holding MER_audio_taffc_dataset/)"; exit 2; }
	$(VENV)/bin/musemo fetch musicnn
	$(PY) export/default_model.py --data4q "$(DATA4Q)"

bench: $(STAMP)
	$(PY) benchmarks/features.py

sdist: $(STAMP)
	$(PY) -m pip install --quiet build
	$(PY) -m build --sdist

clean:
	rm -rf $(VENV) $(LINT_VENV) build dist demo_out benchmarks/results
