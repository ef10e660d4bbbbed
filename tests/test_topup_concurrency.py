"""No double payment: the same confirmation, sent at once from many threads, pays once.

Runs on PostgreSQL (``make test``): the proof rests on its unique constraint making
concurrent inserts of one key wait for each other, which SQLite cannot show.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from dashboard.models import AuditEvent, Topup
from tests.conftest import ACCOUNT_ID, SAFETY_TIMEOUT, ReleaseWhenInFlight, hold
from tests.topup_flow import confirm_data

THREADS = 8
CREATE = reverse("dashboard:topup_create", args=[ACCOUNT_ID])

# A transactional test flushes every table after itself, the roles a migration made too:
# serialized_rollback puts them back.
pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("roles_back_after_module"),
]


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    assert connection.vendor == "postgresql", (
        "the top-up concurrency tests need PostgreSQL: run them with `make test` "
        "(DATABASE_URL=postgres://...)"
    )


def confirmation_of(finance, amount: str) -> dict[str, str]:
    """One confirmation, as the page rendered it for ``finance``."""
    client = Client()
    client.force_login(finance)
    return confirm_data(client, CREATE, amount)


def fire(finance, data: dict[str, str], *, htmx: bool = False) -> list[int | str]:
    """POSTs ``data`` from ``THREADS`` clients at once; each answer's status or Location."""
    barrier = threading.Barrier(THREADS)
    answers: list[int | str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            client = Client()
            client.force_login(finance)
            barrier.wait(SAFETY_TIMEOUT)
            headers = {"HX-Request": "true"} if htmx else None
            response = client.post(CREATE, data, headers=headers)
            with lock:
                if response.status_code == 302:
                    answers.append(response["Location"])
                else:
                    answers.append(response.status_code)
                    assert response.status_code == 200, response.status_code
                    assert 'id="topup-status"' in response.text
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            with lock:
                failures.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY_TIMEOUT * 3)
    assert not any(thread.is_alive() for thread in threads), "a request never ended"
    assert not failures, failures
    return answers


def test_it_pays_once_for_one_confirmation_sent_from_many_threads(finance, sim):
    # The winner's upstream call is held until it is seen in flight, so the others arrive
    # while it is out (a fixed delay would release it too early on a busy machine).
    hold(sim, "POST topup", times=1)
    data = confirmation_of(finance, "25")
    with ReleaseWhenInFlight(sim, {"POST topup": 1}) as watch:
        answers = fire(finance, data)
    assert watch.all_at_once, "the top-up call was never seen in flight"
    topup = Topup.objects.get()
    assert sim.calls["POST topup"] == 1
    assert answers == [f"/accounts/{ACCOUNT_ID}/topups/?topup={topup.pk}"] * THREADS
    assert topup.amount == Decimal("25.00") and topup.status == Topup.Status.PENDING
    events = AuditEvent.objects.filter(action=AuditEvent.Action.TOPUP)
    assert [e.outcome for e in events] == [AuditEvent.Outcome.ACCEPTED]


def test_it_pays_once_with_htmx_too(finance, sim):
    data = confirmation_of(finance, "40")
    answers = fire(finance, data, htmx=True)
    assert answers == [200] * THREADS
    assert sim.calls["POST topup"] == 1
    assert Topup.objects.count() == 1


def test_it_never_pays_again_for_a_completed_top_ups_key(finance, sim):
    client = Client()
    client.force_login(finance)
    data = confirm_data(client, CREATE, "25")
    first = client.post(CREATE, data)
    sim.advance_clock(6)
    topup = Topup.objects.get()
    client.get(
        reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk]), HTTP_HX_REQUEST="true"
    )
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED
    answers = fire(finance, data)
    assert answers == [first["Location"]] * THREADS
    assert sim.calls["POST topup"] == 1
    assert Topup.objects.count() == 1
