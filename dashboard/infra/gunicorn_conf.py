"""Gunicorn's configuration for ``make serve``: ``gunicorn -c dashboard/infra/gunicorn_conf.py``.

Processes for the cores, each with threads, since a page mostly waits on Cloudflare; they share
one Redis cache, so more workers mean no more upstream calls. A malformed value stops gunicorn.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import suppress
from typing import Any


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


wsgi_app = "dashboard.wsgi:application"
# Overridden by `--bind` (make serve passes HOST:PORT).
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")]
workers = _positive("WEB_CONCURRENCY", 4)
worker_class = "gthread"
threads = _positive("GUNICORN_THREADS", 4)
# A page waits at most BILLING_PAGE_DEADLINE for its cards and a read at most
# BILLING_API_TIMEOUT: a request still running after this is stuck, and its worker restarts.
timeout = _positive("GUNICORN_TIMEOUT", 60)
graceful_timeout = 20
keepalive = 5
# On stdout: gunicorn's default line, plus the time taken and the request id, which leads to
# the application's log lines of the same request.
accesslog = "-"
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms '
    "request_id=%({x-request-id}o)s"
)
errorlog = "-"
# The X-Forwarded-* headers are believed from these addresses only (the TLS proxy).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# Metrics of several processes (dashboard/infra/metrics.py): the server starts from an empty
# directory, and the collector is told when a worker is gone.
_METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()


def on_starting(server: Any) -> None:
    if _METRICS_DIR:
        from dashboard.infra.metrics import empty_multiproc_dir

        empty_multiproc_dir(_METRICS_DIR)


def child_exit(server: Any, worker: Any) -> None:
    if _METRICS_DIR:
        from dashboard.infra.metrics import mark_process_dead

        mark_process_dead(worker.pid, _METRICS_DIR)


#: glibc's mallopt parameter for the most malloc arenas a process keeps.
M_ARENA_MAX = -8


def post_fork(server: Any, worker: Any) -> None:
    # glibc gives each thread that allocates an arena of its own (up to 8 per core), and keeps
    # them after the burst: capped at 2, a worker held 84-89 MiB after make bench's load, not
    # 89-93 MiB. Not glibc (no mallopt): nothing to do.
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 2)
