"""Reads that wait for another's read give up at the page deadline; shared reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from dashboard.infra import upstream
from dashboard.services import reads
from tests.conftest import ACCOUNT_ID

KEY = upstream.cache_key(ACCOUNT_ID, "slow")


def eventually(check: Callable[[], bool], what: str) -> None:
    # A safety bound, not a speed claim: the condition is expected at once.
    limit = time.monotonic() + 5
    while not check():
        assert time.monotonic() < limit, f"never happened: {what}"
        time.sleep(0.005)


@pytest.fixture
def held_leader(sim) -> Iterator[threading.Event]:
    """A read of KEY that is out, asking Cloudflare, until the test sets the event."""
    release = threading.Event()

    def slow_loader(client):
        release.wait(10)
        return "answer"

    leader = threading.Thread(target=upstream.read, args=(ACCOUNT_ID, "slow", slow_loader))
    leader.start()
    eventually(lambda: upstream.readers(KEY) == 1, "the leader took the flight")
    yield release
    release.set()
    leader.join(10)


def follower() -> upstream.Fetched[str]:
    return upstream.read(ACCOUNT_ID, "slow", lambda client: "second call")


def test_it_gives_up_waiting_for_another_read_at_the_deadline(held_leader):
    got = upstream.gather({"slow": follower}, deadline=0.05)
    assert got["slow"].pending
    # The pool thread waiting behind the leader left at the deadline, freeing itself.
    eventually(lambda: upstream.readers(KEY) == 1, "the follower gave up")
    held_leader.set()
    eventually(lambda: upstream.readers(KEY) == 0, "the leader finished")
    # The leader's answer is what everyone gets now; the follower never asked again.
    assert follower().value == "answer"


def test_it_waits_without_limit_outside_a_deadline(held_leader):
    results: list[upstream.Fetched[str]] = []
    thread = threading.Thread(target=lambda: results.append(follower()))
    thread.start()
    eventually(lambda: upstream.readers(KEY) == 2, "the follower is waiting")
    held_leader.set()
    thread.join(10)
    assert results[0].value == "answer"


def test_the_overview_and_the_invoices_page_share_one_preview_call(finance_client, sim):
    finance_client.get(f"/accounts/{ACCOUNT_ID}/")
    finance_client.get(f"/accounts/{ACCOUNT_ID}/invoices/")
    assert sim.calls["GET invoice-preview"] == 1


def test_the_overview_says_when_there_is_no_upcoming_invoice(finance_client, monkeypatch):
    monkeypatch.setattr(reads, "load_upcoming", lambda client: reads.Upcoming(None))
    page = finance_client.get(f"/accounts/{ACCOUNT_ID}/", {"partial": "invoice-card"})
    assert page.status_code == 200
    assert "No upcoming invoice" in page.text
