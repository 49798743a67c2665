# Two commands do all set-up on a fresh machine:
#   make demo   - build musemo into .venv and run the demo on the built-in recording
#   make test   - build musemo into .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.musemo-installed
# The abandoned tflite_runtime wheel (numpy < 2), apart from the venv: the tests run the
# edge runtime's fallback to it for real.
TFLITE_RUNTIME := $(VENV)/tflite-runtime-numpy1
# what the build reads: the tracked files (or, outside a git checkout, every file) of these
BUILD_INPUTS := pyproject.toml CMakeLists.txt cpp src
SOURCES := $(shell git ls-files $(BUILD_INPUTS) 2>/dev/null || find $(BUILD_INPUTS) -type f -not -path '*/__pycache__/*')

.PHONY: demo test lint bench sdist clean

$(STAMP): $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir ".[dev,train,export,tflite,live]"
	touch $@

demo: $(STAMP)
	$(VENV)/bin/musemo demo --out demo_out

$(TFLITE_RUNTIME): | $(STAMP)
	rm -rf $@.partial
	$(PY) -m pip install --quiet --no-cache-dir --no-warn-conflicts --target $@.partial \
		"numpy<2" "tflite-runtime==2.14.*" && mv $@.partial $@ \
		|| echo "note: tflite_runtime not installed; its fallback test will skip"

test: $(STAMP) $(TFLITE_RUNTIME)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/features.py

sdist: $(STAMP)
	$(PY) -m pip install --quiet build
	$(PY) -m build --sdist

clean:
	rm -rf $(VENV) build dist demo_out benchmarks/results
