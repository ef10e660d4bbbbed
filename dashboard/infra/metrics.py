"""Prometheus metrics of the dashboard itself, and their exposition for ``/metrics``.

The billing client counts its own upstream calls (``billing_api_upstream_*``, defined next to
the calls in :mod:`billing_api.client`); here are the read cache's hits and misses per read
and the pages' latency per view and status class.

Gunicorn runs several worker processes, each with its own counters. With
``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts: prometheus_client reads it when
it is imported), every process writes its values to files in that directory and
:func:`exposition` sums them, whichever worker answers the scrape. The directory must be
emptied when the server starts (:func:`empty_multiproc_dir`, from gunicorn's
``on_starting``), and gunicorn's ``child_exit`` calls :func:`mark_process_dead`. Without it
(runserver, tests) the process's own registry is exposed.
"""

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


def record_cache_unavailable(operation: str, reason: str) -> None:
    """Counts one cache operation done without Redis (``get``, ``set``...; error/skipped)."""
    CACHE_UNAVAILABLE.labels(operation, reason).inc()


def view_label(request: HttpRequest) -> str:
    """The matched URL's name (``dashboard:overview``, ``admin:index``); never the path, whose
    account ids and query strings would make a new time series per visitor."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return match.view_name or UNMATCHED


class PageMetricsMiddleware:
    """Observes every response's latency, labelled with its view and status class."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        PAGE_LATENCY.labels(view_label(request), f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return response


def exposition(multiproc_dir: str = "") -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, with its content type.

    With ``multiproc_dir``, the sum over every process that wrote there; else this process's.
    """
    registry = REGISTRY
    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def empty_multiproc_dir(multiproc_dir: str) -> None:
    """Creates the directory, or removes the previous run's value files from it: counters
    start again at zero with the server (Prometheus reads a reset as such), and files of
    long-gone processes are not summed."""
    directory = Path(multiproc_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def mark_process_dead(pid: int, multiproc_dir: str) -> None:
    """For gunicorn's ``child_exit``: drops a dead worker's live gauges (counters stay)."""
    multiprocess.mark_process_dead(pid, multiproc_dir)  # type: ignore[no-untyped-call]
