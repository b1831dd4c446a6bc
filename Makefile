# The README's commands. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check bench reliability install install-test browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

## demo: install, start an embedded PostgreSQL with demo data, and serve on :8000
demo: install
	$(BIN)/kenbun-analytics demo

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

## test: install and run the whole test suite (starts its own PostgreSQL; installs Chromium if missing)
test: install-test browser
	$(BIN)/pytest

## check: lint, format and type checks
check: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: the benchmark harness at 100k events (see benchmarks/README.md for larger runs)
bench: install-test
	$(BIN)/python -m benchmarks.run --events 100000

## reliability: faults, load and hostile input against the real service; writes docs/reliability.md
reliability: install-test
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m benchmarks.reliability
