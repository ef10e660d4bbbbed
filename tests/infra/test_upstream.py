"""The shared read layer: cache, single flight, remembered failures, stale values, deadlines."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.cache.backends import locmem
from django.utils import timezone

from dashboard.infra import upstream
from dashboard.services import reads
from tests.conftest import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    SAFETY_TIMEOUT,
    ReleaseWhenInFlight,
    eventually,
    flight_users,
    hold,
    wait_for_background_reads,
)

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


@pytest.fixture
def later(monkeypatch):
    """Moves the dashboard's "now" forward, so that what it keeps grows older at once."""
    offset = [timedelta()]
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset[0])

    def advance(seconds: float) -> None:
        offset[0] += timedelta(seconds=seconds)

    return advance


class Threads:
    """Runs callables in threads of their own; ``join()`` returns their results in order."""

    def __init__(self, *fns) -> None:
        self.results: list[Any] = [None] * len(fns)
        self._threads = [
            threading.Thread(target=self._run, args=(i, fn), daemon=True)
            for i, fn in enumerate(fns)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, index: int, fn) -> None:
        self.results[index] = fn()

    def join(self) -> list[Any]:
        for thread in self._threads:
            thread.join(SAFETY_TIMEOUT)
            assert not thread.is_alive(), "a reader never finished"
        return self.results


def test_it_collapses_concurrent_identical_reads_into_one_call(sim):
    hold(sim, "GET credit-balance")
    readers = Threads(*[lambda: reads.credit_balance(ACCOUNT_ID)] * 10)
    # All ten are in the read's flight while its one call is out: only then may it answer.
    eventually(
        lambda: (
            flight_users(ACCOUNT_ID, "credit-balance") == 10
            and sim.in_flight == {"GET credit-balance": 1}
        ),
        "all ten readers in the flight of one call",
    )
    sim.release()
    results = readers.join()
    assert sim.calls["GET credit-balance"] == 1
    assert all(r.ok for r in results)
    assert len({r.value.balance for r in results}) == 1


def test_it_does_not_collapse_reads_of_different_accounts(sim):
    hold(sim, "GET credit-balance")

    def read_both(first: str, second: str) -> list[upstream.Fetched[object]]:
        return [reads.credit_balance(first), reads.credit_balance(second)]

    one_way, other_way = (ACCOUNT_ID, OTHER_ACCOUNT_ID), (OTHER_ACCOUNT_ID, ACCOUNT_ID)
    readers = Threads(*(partial(read_both, *order) for order in [one_way, other_way] * 2))
    # Two calls out at once, one per account, each with two readers: neither account's
    # read waits for the other's.
    eventually(
        lambda: (
            flight_users(ACCOUNT_ID, "credit-balance") == 2
            and flight_users(OTHER_ACCOUNT_ID, "credit-balance") == 2
            and sim.in_flight == {"GET credit-balance": 2}
        ),
        "one call per account out at once",
    )
    sim.release()
    results = readers.join()
    assert sim.calls["GET credit-balance"] == 2
    assert all(r.ok for pair in results for r in pair)


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


def test_an_answer_just_past_its_period_is_shown_while_one_read_refreshes_it(sim, settings, later):
    settings.BILLING_CACHE_SECONDS = 30
    first = reads.credit_balance(ACCOUNT_ID)
    later(40)
    hold(sim, "GET credit-balance", times=1)
    # Five viewers while the refresh is out: each is answered at once with what is kept,
    # and one call refreshes it for all.
    viewers = Threads(*[lambda: reads.credit_balance(ACCOUNT_ID)] * 5)
    assert sim.wait_for_in_flight({"GET credit-balance": 1}, SAFETY_TIMEOUT)
    eventually(lambda: all(r is not None for r in viewers.results), "answered during the refresh")
    assert all(r == first for r in viewers.join())
    sim.release()
    wait_for_background_reads()
    refreshed = reads.credit_balance(ACCOUNT_ID)
    assert refreshed.ok and refreshed.as_of is not None and first.as_of is not None
    assert refreshed.as_of > first.as_of
    assert sim.calls["GET credit-balance"] == 2


def test_an_answer_older_than_two_periods_is_not_shown_but_asked_again(sim, settings, later):
    settings.BILLING_CACHE_SECONDS = 30
    first = reads.credit_balance(ACCOUNT_ID)
    later(61)
    again = reads.credit_balance(ACCOUNT_ID)
    assert again.ok and again.as_of is not None and first.as_of is not None
    assert (again.as_of - first.as_of).total_seconds() >= 61
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
    hold(sim, "*")
    # The three calls are out at once before any of them may answer (the deadline is only a
    # safety bound: gather returns as soon as all three are back).
    three = {"GET credit-balance": 1, "GET spending-limit": 1, "GET invoice-preview": 1}
    with ReleaseWhenInFlight(sim, three) as watch:
        got = upstream.gather(
            {
                "balance": lambda: reads.credit_balance(ACCOUNT_ID),
                "limit": lambda: reads.spending_limit(ACCOUNT_ID),
                "preview": lambda: reads.invoice_preview(ACCOUNT_ID),
            },
            deadline=SAFETY_TIMEOUT,
        )
    assert watch.all_at_once
    assert all(f.ok for f in got.values())
    assert sim.calls == three


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
    hold(sim, "GET credit-balance", times=1)
    got = upstream.gather({"balance": lambda: reads.credit_balance(ACCOUNT_ID)}, deadline=0.05)
    assert got["balance"] == upstream.Fetched(None, None, pending=True)
    # gather answered though the call cannot end before release(): it goes on meanwhile.
    assert sim.wait_for_in_flight({"GET credit-balance": 1}, SAFETY_TIMEOUT)
    # Asking again joins the read still out (single flight) and gets its answer.
    asker = Threads(lambda: reads.credit_balance(ACCOUNT_ID))
    eventually(lambda: flight_users(ACCOUNT_ID, "credit-balance") == 2, "the asker joined")
    sim.release()
    (later,) = asker.join()
    assert later.ok
    assert sim.calls["GET credit-balance"] == 1
    # And it is in the cache now.
    sim.set_fault("GET credit-balance", "error", status=500)
    assert reads.credit_balance(ACCOUNT_ID).ok
    assert sim.calls["GET credit-balance"] == 1
