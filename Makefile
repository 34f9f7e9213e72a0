# carbonx developer entry points. The two that matter: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint bench postgres-server compose-checker browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The sources setup.py compiles (with mypyc: services/exchange/native.py lists them; in
# C: events/_speedups.c): an edit reinstalls, which rebuilds the binaries (at run time
# a stale binary is refused).
NATIVE_SOURCES := setup.py events/_speedups.c $(addprefix services/exchange/,native.py serials.py prices.py book.py engine.py)

# Stamps: reinstall only when pyproject.toml or a compiled source changes.
$(VENV)/.installed-run: pyproject.toml $(NATIVE_SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(NATIVE_SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

## run: install and start the all-in-one demo server on http://127.0.0.1:8000
run: $(VENV)/.installed-run
	$(BIN)/carbonx serve --demo

## test: install with test extras, make sure PostgreSQL's server binaries exist, run the suite
test: $(VENV)/.installed-test postgres-server compose-checker browser
	CARBONX_EXPECT_NATIVE=1 $(BIN)/python -m pytest

# The tests start their own throwaway PostgreSQL server; they need its binaries
# (initdb, postgres). Install Debian's package only when they are missing.
postgres-server:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then \
		echo "PostgreSQL server binaries: present"; \
	else \
		echo "PostgreSQL server binaries missing: installing with apt"; \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y postgresql; \
	fi

# A test checks that infra/deploy/compose.yaml parses (`docker-compose config`; no
# Docker engine is needed for that). Install Debian's docker-compose only when missing.
compose-checker:
	@if command -v docker-compose >/dev/null 2>&1; then \
		echo "docker-compose: present"; \
	else \
		echo "docker-compose missing: installing with apt"; \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y docker-compose; \
	fi

# The dashboard's browser test drives Debian's headless Chromium (Playwright's own browser
# download needs a network we do not have). Install it only when missing.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: present"; \
	else \
		echo "chromium missing: installing with apt"; \
		$(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy

# Every benchmark, each against its own baseline measured in the same run (the figures
# in the README came from these, with the issues' sizes; these sizes are quicker).
bench: $(VENV)/.installed-test postgres-server
	$(BIN)/python scripts/bench_store.py --n 200000
	$(BIN)/python scripts/bench_engine.py --n 100000
	$(BIN)/python scripts/bench_relay.py --n 100000
	$(BIN)/python scripts/bench_replay.py --n 200000
	$(BIN)/python scripts/bench_http.py --n 15000

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache build
	rm -f services/exchange/*.so services/exchange/_native_stamp.py
