# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# pyenv reads .python-version (3.12); elsewhere python3.12 is looked up on PATH.
PYTHON ?= $(shell command -v python3.12 >/dev/null 2>&1 && echo python3.12 || echo python3)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint types pytest simulator bench-read fmt clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 12), "Python 3.12 is needed, found " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_users --url http://$(HOST):$(PORT)/
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: $(VENV)/.installed-test lint types pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.installed-test
	$(BIN)/mypy .

pytest: $(VENV)/.installed-test
	$(BIN)/pytest

# The standalone Cloudflare simulator, for pointing BILLING_API_BASE_URL (or an SDK) at it.
simulator: $(VENV)/.installed-run
	$(BIN)/python -m billing_api.simulator --port 8787

# Not a test: prints the overview's response times and upstream calls against a slow simulator
# (20 clients for 30 s; shorter with BENCH_ARGS="--seconds 10").
bench-read: $(VENV)/.installed-run
	$(BIN)/python manage.py bench_read $(BENCH_ARGS)

fmt: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
