# Two commands do all set-up on a fresh machine:
#   make demo   - build musemo into .venv and run the demo on the built-in recording
#   make test   - build musemo into .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.musemo-installed
SOURCES := pyproject.toml CMakeLists.txt $(wildcard cpp/*) $(wildcard src/musemo/*.py)

.PHONY: demo test lint bench sdist clean

$(STAMP): $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir ".[dev,train,export,tflite]"
	touch $@

demo: $(STAMP)
	$(VENV)/bin/musemo demo --out demo_out

test: $(STAMP)
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
