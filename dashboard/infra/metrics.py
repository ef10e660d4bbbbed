"""Prometheus metrics of the dashboard itself (the billing client counts its own upstream calls)
and ``/metrics``'s exposition. With ``PROMETHEUS_MULTIPROC_DIR`` (set before start:
prometheus_client reads it at import) every gunicorn worker writes its values there and
:func:`exposition` sums them; gunicorn's hooks empty the directory at start and mark dead
workers. Else the process's own registry."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

READ_CACHE_HITS = Counter(
    "dashboard_read_cache_hits",
    "Upstream reads answered from the shared cache, by read.",
    ["read"],
)
READ_CACHE_MISSES = Counter(
    "dashboard_read_cache_misses",
    "Upstream reads not in the cache (asked Cloudflare, waited for another's call, or "
    "answered from a remembered failure), by read.",
    ["read"],
)
PAGE_LATENCY = Histogram(
    "dashboard_page_duration_seconds",
    "Time from a request's arrival to its response's headers, by view and status class.",
    ["view", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CACHE_UNAVAILABLE = Counter(
    "dashboard_cache_unavailable",
    "Cache operations answered without Redis (a miss, or nothing stored), by operation and "
    "reason: error (Redis was tried and failed) or skipped (it failed a moment ago).",
    ["operation", "reason"],
)
#: The view label of a request that matched no URL: one label, whatever was asked.
UNMATCHED = "unmatched"


def record_cache(read: str, *, hit: bool) -> None:
    """Counts one read of ``read`` (a constant name such as ``credit-balance``)."""
    (READ_CACHE_HITS if hit else READ_CACHE_MISSES).labels(read).inc()


class PageMetricsMiddleware:
    """Observes every response's latency, labelled with its view and status class. The view is
    the matched URL's name (``dashboard:overview``), never the path, whose account ids and
    query strings would make a new time series per visitor."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        view = (request.resolver_match and request.resolver_match.view_name) or UNMATCHED
        PAGE_LATENCY.labels(view, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return response


def exposition(multiproc_dir: str = "") -> tuple[bytes, str]:
    """The metrics in Prometheus' text format (summed over ``multiproc_dir``), and its type."""
    registry = REGISTRY
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def empty_multiproc_dir(multiproc_dir: str) -> None:
    """Creates the directory, or removes the previous run's files from it: counters start at
    zero with the server (Prometheus reads a reset as such)."""
    directory = Path(multiproc_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def mark_process_dead(pid: int, multiproc_dir: str) -> None:
    """For gunicorn's ``child_exit``: drops a dead worker's live gauges (counters stay)."""
    multiprocess.mark_process_dead(pid, multiproc_dir)  # type: ignore[no-untyped-call]
