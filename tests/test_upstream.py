"""The shared read layer: cache, single flight, remembered failures, stale values, deadlines."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.cache.backends import locmem

from dashboard import upstream
from dashboard.services import reads
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID

START = datetime(2026, 6, 9, tzinfo=UTC)
END = datetime(2026, 6, 10, tzinfo=UTC)


@pytest.fixture
def cache_clock(monkeypatch):
    """Moves the local-memory cache's idea of time forward, so entries expire at once."""
    offset = [0.0]
    monkeypatch.setattr(locmem, "time", SimpleNamespace(time=lambda: time.time() + offset[0]))

    def advance(seconds: float) -> None:
        offset[0] += seconds

    return advance


def in_threads(count: int, fn):
    """Runs ``fn`` in ``count`` threads released together; returns their results."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        results[index] = fn()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    return results


def test_it_collapses_concurrent_identical_reads_into_one_call(sim):
    sim.set_fault("GET credit-balance", "latency", seconds=0.2)
    results = in_threads(10, lambda: reads.credit_balance(ACCOUNT_ID))
    assert sim.calls["GET credit-balance"] == 1
    assert all(r.ok for r in results)
    assert len({r.value.balance for r in results}) == 1


def test_it_does_not_collapse_reads_of_different_accounts(sim):
    sim.set_fault("GET credit-balance", "latency", seconds=0.1)
    started = time.monotonic()
    in_threads(2, lambda: None)  # warm the thread machinery
    results = in_threads(
        4,
        lambda: [reads.credit_balance(a) for a in (ACCOUNT_ID, OTHER_ACCOUNT_ID)],
    )
    assert sim.calls["GET credit-balance"] == 2
    assert all(r.ok for pair in results for r in pair)
    assert time.monotonic() - started < 0.8


def test_it_caches_per_account(sim):
    reads.credit_balance(ACCOUNT_ID)
    reads.credit_balance(OTHER_ACCOUNT_ID)
    reads.credit_balance(ACCOUNT_ID)
    reads.credit_balance(OTHER_ACCOUNT_ID)
    assert sim.calls["GET credit-balance"] == 2


def test_it_caches_per_params(sim):
    reads.usage_history(ACCOUNT_ID, "hour", START, END)
    reads.usage_history(ACCOUNT_ID, "day", START, END)
    reads.usage_history(ACCOUNT_ID, "hour", START, END)
    reads.usage_history(ACCOUNT_ID, "hour", START - timedelta(hours=1), END)
    reads.usage_history(OTHER_ACCOUNT_ID, "hour", START, END)
    assert sim.calls["GET usage-history"] == 4


def test_it_keys_params_in_any_order():
    one = upstream.cache_key(ACCOUNT_ID, "x", {"a": 1, "b": 2})
    assert one == upstream.cache_key(ACCOUNT_ID, "x", {"b": 2, "a": 1})
    assert one != upstream.cache_key(ACCOUNT_ID, "x", {"a": 1, "b": 3})
    assert one != upstream.cache_key(OTHER_ACCOUNT_ID, "x", {"a": 1, "b": 2})


def test_it_asks_again_once_the_cache_period_is_over(sim, settings):
    settings.BILLING_CACHE_SECONDS = 0
    reads.credit_balance(ACCOUNT_ID)
    reads.credit_balance(ACCOUNT_ID)
    assert sim.calls["GET credit-balance"] == 2


def test_it_remembers_a_failure_then_asks_again_after_the_error_period(sim, settings, cache_clock):
    settings.BILLING_ERROR_CACHE_SECONDS = 10
    sim.set_fault("GET credit-balance", "error", status=500)
    first = reads.credit_balance(ACCOUNT_ID)
    assert first.value is None and "having trouble" in (first.error or "")
    sim.clear_faults()
    cache_clock(9)
    again = reads.credit_balance(ACCOUNT_ID)
    assert again.error == first.error  # remembered: Cloudflare was not asked
    assert sim.calls["GET credit-balance"] == 1
    cache_clock(2)
    recovered = reads.credit_balance(ACCOUNT_ID)
    assert recovered.ok
    assert sim.calls["GET credit-balance"] == 2


def test_it_returns_the_last_good_value_with_the_error(sim, settings):
    settings.BILLING_CACHE_SECONDS = 0
    good = reads.credit_balance(ACCOUNT_ID)
    sim.set_fault("GET credit-balance", "rate_limit", retry_after=300)
    stale = reads.credit_balance(ACCOUNT_ID)
    assert stale.stale and not stale.ok
    assert stale.value == good.value
    assert stale.as_of == good.as_of
    assert "limiting how often" in (stale.error or "")


def test_it_never_raises_for_an_upstream_failure(sim):
    for kind in ("hang", "malformed", "unsuccessful"):
        sim.clear_faults()
        sim.set_fault("GET spending-limit", kind)
        fetched = upstream.read(ACCOUNT_ID, f"limit-{kind}", lambda c: c.spending_limit())
        assert fetched.value is None and fetched.error and not fetched.pending


def test_it_gathers_reads_in_parallel(sim):
    sim.set_fault("*", "latency", seconds=0.1)
    started = time.monotonic()
    got = upstream.gather(
        {
            "balance": lambda: reads.credit_balance(ACCOUNT_ID),
            "limit": lambda: reads.spending_limit(ACCOUNT_ID),
            "preview": lambda: reads.invoice_preview(ACCOUNT_ID),
        },
        deadline=2,
    )
    assert time.monotonic() - started < 0.25
    assert all(f.ok for f in got.values())


def test_it_keeps_a_failing_read_from_spoiling_the_others(sim):
    sim.set_fault("GET spending-limit", "error", status=503)
    got = upstream.gather(
        {
            "balance": lambda: reads.credit_balance(ACCOUNT_ID),
            "limit": lambda: reads.spending_limit(ACCOUNT_ID),
        },
        deadline=2,
    )
    assert got["balance"].ok
    assert got["limit"].error and got["limit"].value is None


def test_it_answers_pending_at_the_deadline_and_finishes_in_the_background(sim):
    sim.set_fault("GET credit-balance", "latency", seconds=0.3)
    started = time.monotonic()
    got = upstream.gather({"balance": lambda: reads.credit_balance(ACCOUNT_ID)}, deadline=0.05)
    assert time.monotonic() - started < 0.2
    assert got["balance"] == upstream.Fetched(None, None, pending=True)
    # Asking again joins the read still out (single flight) and gets its answer.
    later = reads.credit_balance(ACCOUNT_ID)
    assert later.ok
    assert sim.calls["GET credit-balance"] == 1
    # And it is in the cache now.
    sim.set_fault("GET credit-balance", "error", status=500)
    assert reads.credit_balance(ACCOUNT_ID).ok
    assert sim.calls["GET credit-balance"] == 1
