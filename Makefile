# critmin: set-up and the two jobs named in the README.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: setup browser run test lint bench clean

# Debian's chromium for the browser tests (never `playwright install`): installed with apt when missing,
# as root or through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }
	@/usr/bin/chromium --version

# The main job: show the default world, run the baseline scenario and export it, then write the HTML report
# comparing the baseline with the February 2026 situation.
run: setup
	$(BIN)/critmin data
	$(BIN)/critmin run baseline --export results.csv
	$(BIN)/critmin report baseline club-2026 -o report.html

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: setup lint browser
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/engine_vs_highs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
