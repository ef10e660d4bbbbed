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

.PHONY: run serve test lint types pytest browser screenshots services simulator bench bench-read fmt clean

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
	ALERTS_IN_PROCESS=true ALERTS_INTERVAL_SECONDS=30 $(BIN)/python manage.py runserver $(HOST):$(PORT)

test: $(VENV)/.installed-test services lint types pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

types: $(VENV)/.installed-test
	$(BIN)/mypy .

pytest: $(VENV)/.installed-test browser
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest

# The browser tests (tests/browser/) drive Debian's Chromium; never `playwright install`.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium"; \
	  apt-get update && apt-get install -y chromium; }

# The README's screenshots (static/screenshots/), retaken from the current code in demo mode.
screenshots: $(VENV)/.installed-test browser
	$(BIN)/python -m tests.browser.readme_screenshots

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

# Production settings on this machine: gunicorn (WEB_CONCURRENCY workers) on PostgreSQL and
# Redis, DEBUG off, hashed and compressed static files. Plain http here, so the https-only
# redirect and cookies are off unless set; behind a TLS proxy see README. Without a Cloudflare
# token, one standalone simulator (shared by every worker) stands in for Cloudflare, serving
# the demo accounts, and stops with the server.
SERVE_DATABASE ?= spend_dashboard
serve: export DATABASE_URL ?= postgres://127.0.0.1:5432/$(SERVE_DATABASE)
serve: export REDIS_URL ?= redis://127.0.0.1:6379/0
serve: export ALLOWED_HOSTS ?= $(HOST),127.0.0.1,localhost
serve: export WEB_CONCURRENCY ?= 4
serve: export SECURE_SSL_REDIRECT ?= false
serve: export SESSION_COOKIE_SECURE ?= false
serve: export CSRF_COOKIE_SECURE ?= false
# Each gunicorn worker writes its metrics here and /metrics sums them; emptied at start.
serve: export PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/var/metrics-$(PORT)
serve: $(VENV)/.installed-run services
	@set -euo pipefail; mkdir -p var "$$PROMETHEUS_MULTIPROC_DIR"; \
	if [ "$$DATABASE_URL" = "postgres://127.0.0.1:5432/$(SERVE_DATABASE)" ] && \
	   ! psql -h 127.0.0.1 -p 5432 -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$(SERVE_DATABASE)'" | grep -q 1; then \
	  echo "creating database $(SERVE_DATABASE)"; createdb -h 127.0.0.1 -p 5432 $(SERVE_DATABASE); \
	fi; \
	if [ -z "$${SECRET_KEY:-}$${SECRET_KEY_FILE:-}" ]; then \
	  if [ ! -s var/secret_key ]; then \
	    (umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))' > var/secret_key); \
	  fi; \
	  chmod 600 var/secret_key; export SECRET_KEY_FILE="$(CURDIR)/var/secret_key"; \
	fi; \
	simulated=; \
	if [ -z "$${CLOUDFLARE_API_TOKEN:-}$${CLOUDFLARE_API_TOKEN_FILE:-}$${CLOUDFLARE_ACCOUNTS:-}" ]; then \
	  simulated=1; \
	  accounts=$$(env -u BILLING_API_BASE_URL $(BIN)/python -c 'from dashboard import settings as s; print(",".join(f"{k}={v}" for k, v in s.BILLING_ACCOUNTS.items()))'); \
	  token=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))'); \
	  log=var/serve-simulator-$(PORT).log; : > $$log; \
	  $(BIN)/python -m billing_api.simulator --host 127.0.0.1 --port 0 --quiet --token="$$token" \
	    --seed "$${BILLING_SIMULATOR_SEED:-0}" \
	    $$(tr ',' '\n' <<< "$$accounts" | cut -d= -f1 | sed 's/^/--account /') > $$log 2>&1 & \
	  sim_pid=$$!; trap 'kill $$sim_pid 2>/dev/null; wait $$sim_pid 2>/dev/null || true' EXIT; \
	  trap 'exit 130' INT; trap 'exit 143' TERM; \
	  for i in $$(seq 100); do grep -q '^base URL:' $$log && break; \
	    kill -0 $$sim_pid 2>/dev/null || { cat $$log; echo "the simulator did not start" >&2; exit 1; }; \
	    sleep 0.1; done; \
	  export BILLING_API_BASE_URL=$$(sed -n 's/^base URL: *//p' $$log); \
	  test -n "$$BILLING_API_BASE_URL" || { echo "the simulator did not start in 10 s" >&2; exit 1; }; \
	  export CLOUDFLARE_API_TOKEN="$$token" CLOUDFLARE_ACCOUNTS="$$accounts"; \
	  echo "Cloudflare simulator (no CLOUDFLARE_API_TOKEN set) at $$BILLING_API_BASE_URL"; \
	fi; \
	$(BIN)/python manage.py migrate --noinput; \
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0; \
	if [ -n "$$simulated" ]; then \
	  $(BIN)/python manage.py demo_users --force --url http://$(HOST):$(PORT)/; \
	else \
	  echo "Open http://$(HOST):$(PORT)/ (create logins with manage.py createsuperuser)"; \
	fi; \
	$(BIN)/gunicorn --config dashboard/infra/gunicorn_conf.py --bind $(HOST):$(PORT)

# The standalone Cloudflare simulator, for pointing BILLING_API_BASE_URL (or an SDK) at it.
simulator: $(VENV)/.installed-run
	$(BIN)/python -m billing_api.simulator --port 8787

# Not a test: the dashboard as deployed (gunicorn, 4 workers, PostgreSQL, Redis) under load and
# faults, against a simulator with 200 ms per call; about 8 minutes (BENCH_ARGS=--quick: under
# 2). Prints a table and writes it as JSON to bench/results/. Needs wrk: installed if missing.
bench: $(VENV)/.installed-run services
	@command -v wrk >/dev/null || { \
	  echo "installing wrk"; \
	  apt-get update && apt-get install -y wrk; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Not a test: prints the overview's response times and upstream calls against a slow simulator
# (20 clients for 30 s; shorter with BENCH_ARGS="--seconds 10").
bench-read: $(VENV)/.installed-run
	$(BIN)/python -m bench.read $(BENCH_ARGS)

fmt: $(VENV)/.installed-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
