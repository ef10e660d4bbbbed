# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# pyenv reads .python-version (3.12); elsewhere python3.12 is looked up on PATH.
PYTHON ?= $(shell command -v python3.12 >/dev/null 2>&1 && echo python3.12 || echo python3)
HOST ?= 127.0.0.1
PORT ?= 8000

# Tests run on PostgreSQL, as production does; `make run` keeps the embedded SQLite.
TEST_DATABASE_URL ?= postgres://127.0.0.1:5432/test

.PHONY: run test lint types pytest browser services simulator bench-read fmt clean

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

test: $(VENV)/.installed-test services lint types pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(VENV)/.installed-test
	$(BIN)/mypy .

pytest: $(VENV)/.installed-test browser
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest

# The browser tests (tests/browser/) drive Debian's Chromium; never `playwright install`.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium"; \
	  apt-get update && apt-get install -y chromium; }

# Start PostgreSQL and Redis on 127.0.0.1 if they are installed here but not running.
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	@pg_isready -h 127.0.0.1 -p 5432
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { \
	  echo "starting Redis"; \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no; \
	  for i in $$(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done; }
	@redis-cli -h 127.0.0.1 -p 6379 ping

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
