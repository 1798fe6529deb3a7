# critmin: set-up and the two jobs named in the README.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job: show the default world, then run the baseline scenario and export it.
run: setup
	$(BIN)/critmin data
	$(BIN)/critmin run baseline --export results.csv

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/engine_vs_highs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
