# Everyday commands. Each installs what it needs into .venv first, pinned by requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet -c requirements.lock
CHROMIUM ?= $(shell command -v chromium 2>/dev/null)

.DEFAULT_GOAL := help
.PHONY: help demo test test-fast check bench screenshots reliability install install-test lock

## help: list the commands
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  make /' -e 's/: /\t/' | expand -t 24

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(PIP) -e '.[demo]'

install-test: $(BIN)/python
	$(PIP) -e '.[demo,test]'

## demo: install, start an embedded PostgreSQL with demo data, and serve on :8000
demo: install
	$(BIN)/kenbun-analytics demo

## test: install and run the whole suite (it starts its own PostgreSQL; the browser tier needs Chromium)
test: install-test
ifeq ($(CHROMIUM),)
	@echo "Chromium is missing: the browser tests are skipped. Install it with: apt-get install chromium (as root)"
	$(BIN)/pytest -m "not browser"
else
	$(BIN)/pytest
endif

## test-fast: the unit tier only (no PostgreSQL, no browser)
test-fast: install-test
	$(BIN)/pytest tests/unit

## check: ruff check, ruff format --check, mypy --strict on src, tests, benchmarks and support
check: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: the benchmark at 100k events; writes benchmarks/RESULTS.md (EVENTS=10000000 for the full size)
bench: install-test
	$(BIN)/python -m benchmarks.run --events $(or $(EVENTS),100000)

## screenshots: the browser tests, writing the page's screenshots to docs/screenshots
screenshots: install-test
	KENBUN_SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -m browser

## reliability: faults, load and hostile input against the real service; writes docs/reliability.md
reliability: install-test
	@command -v wrk >/dev/null 2>&1 || { echo "wrk is missing: apt-get install wrk (as root)"; exit 1; }
	$(BIN)/python -m benchmarks.reliability

## lock: pin every dependency again into requirements.lock (after a change to pyproject.toml)
lock: $(BIN)/python
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra demo --extra test --python-version 3.11 \
		--no-header --output-file requirements.lock
