"""Pending and unknown top-ups are followed up by the worker, with no browser open.

The worker's jobs run in threads with database connections of their own: these tests are
transactional (see test_alerts_workers.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing_api.simulator.core import Simulator
from billing_api.simulator.state import Invoice
from dashboard import tasks
from dashboard.models import AuditEvent, Topup
from tests.conftest import ACCOUNT_ID, Travel, at_once, make_due, run_jobs
from tests.services.test_topup_reconcile import cloudflare_took, timed_out
from tests.topup_flow import confirm_data

PAGE = reverse("dashboard:topups", args=[ACCOUNT_ID])
CREATE = reverse("dashboard:topup_create", args=[ACCOUNT_ID])
ACTIVITY = reverse("dashboard:activity", args=[ACCOUNT_ID])
STATUS_CALLS = "POST topup/status"


pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("roles_back_after_module"),
]


def worker_round(said: list[str] | None = None) -> None:
    """One round of ``manage.py alerts_worker``'s jobs, every follow-up whose time has come by
    the dashboard's clock included; ``said`` gets what the jobs report."""
    handler = Said()
    logging.getLogger(tasks.__name__).addHandler(handler)
    try:
        tasks.check_alerts.defer()  # it takes up the top-ups whose sender died
        run_jobs()
    finally:
        logging.getLogger(tasks.__name__).removeHandler(handler)
    if said is not None:
        said += handler.lines


class Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def seconds(sim: Simulator, count: float) -> None:
    """The simulator's and the dashboard's clocks on by ``count`` seconds (see ``travel``)."""
    sim.advance_clock(count)
    cache.clear()  # the page's reads are cached by real seconds, not travelled ones


def pending(client: Client, sim: Simulator, amount: str = "25") -> Topup:
    """A top-up Cloudflare accepted; the browser that made it is then closed."""
    client.post(CREATE, confirm_data(client, CREATE, amount))
    topup = Topup.objects.get(amount=Decimal(amount))
    assert topup.status == Topup.Status.PENDING and topup.payment_intent_id
    return topup


def test_it_completes_a_pending_topup_with_no_browser_open(finance_client, sim, travel: Travel):
    sim.topup_settle_seconds = 35
    topup = pending(finance_client, sim)
    worker_round()
    assert sim.calls[STATUS_CALLS] == 0  # its first follow-up is 10 s after it was made
    seconds(sim, 11)
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.PENDING and sim.calls[STATUS_CALLS] == 1
    seconds(sim, 30)
    said: list[str] = []
    worker_round(said)
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED and topup.completed_at is not None
    assert topup.follow_up_at is None
    assert said == [f"top-up {topup.pk}: completed."]
    page = finance_client.get(PAGE).text
    assert "Completed" in page and "Pending" not in page
    # Nothing asks about it any more.
    seconds(sim, 3600)
    worker_round()
    assert sim.calls[STATUS_CALLS] == 2
    assert sim.calls["POST topup"] == 1


def test_it_completes_it_from_its_paid_invoice_when_the_status_lags(finance_client, sim, travel):
    topup = pending(finance_client, sim)
    (made,) = sim.account(ACCOUNT_ID).topups.values()
    made.settles_at = sim.now() + 86400  # topup/status answers "pending" all day
    created = int(travel.now().timestamp())
    paid = Invoice(topup.payment_intent_id, 2500, created, "manual", "api-token", status="paid")
    sim.account(ACCOUNT_ID).invoices.append(paid)
    for wait in (11, 30, 60):
        seconds(sim, wait)
        worker_round()
        topup.refresh_from_db()
        assert topup.status == Topup.Status.PENDING
    assert sim.calls["GET invoice-history"] == 0
    seconds(sim, 300)  # about 5 minutes in, its invoice is looked at too
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED and topup.follow_up_at is None


def test_it_says_so_when_cloudflare_forgot_the_id_and_its_invoice_is_unpaid(
    finance_client, sim, travel
):
    topup = pending(finance_client, sim)
    del sim.account(ACCOUNT_ID).topups[topup.payment_intent_id]  # topup/status answers 404
    seconds(sim, 11)
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.PENDING
    assert topup.follow_up_note == (
        "Cloudflare no longer knows this payment id, and its invoice is not paid yet. "
        "The dashboard asks again at 12:30 UTC."
    )


def test_it_appends_the_completion_to_the_activity(finance_client, admin_client, sim, travel):
    topup = pending(finance_client, sim)
    seconds(sim, 11)
    worker_round()
    accepted, settled = AuditEvent.objects.filter(action=AuditEvent.Action.TOPUP).order_by("id")
    assert accepted.after is not None and accepted.after["status"] == "pending"
    assert settled.username == "dashboard follow-up"
    assert settled.idempotency_key == topup.idempotency_key
    assert settled.before == {"status": "pending"}
    assert settled.after == {
        "amount": "25.00",
        "payment_intent_id": topup.payment_intent_id,
        "status": "completed",
    }
    page = admin_client.get(ACTIVITY).text
    assert "dashboard follow-up" in page
    assert "Cloudflare completed the payment; the balance includes it." in page


def test_it_reconciles_an_unknown_topup_from_the_invoices_with_no_browser_open(
    finance_client, sim, travel
):
    topup = timed_out(finance_client, sim, "50")
    payment_id = cloudflare_took(sim, topup, invoice=False)
    seconds(sim, 11)  # settled meanwhile: the simulator lists its paid invoice
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED and topup.payment_intent_id == payment_id
    assert topup.follow_up_at is None
    (event,) = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.ACCEPTED)
    assert event.username == "dashboard follow-up"
    assert event.after is not None and event.after["reconciled"] is True
    assert sim.calls["POST topup"] == 1


def test_it_follows_an_unknown_topup_found_pending_until_it_completes(finance_client, sim, travel):
    topup = timed_out(finance_client, sim)
    cloudflare_took(sim, topup)  # its invoice is open: the payment is being processed
    (made,) = sim.account(ACCOUNT_ID).topups.values()
    made.settles_at = sim.now() + 30
    seconds(sim, 11)
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.PENDING
    seconds(sim, 11)
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.PENDING
    seconds(sim, 31)
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED


def test_it_gives_up_on_an_unknown_topup_with_no_charge_and_says_so(finance_client, sim, travel):
    topup = timed_out(finance_client, sim)
    Topup.objects.filter(pk=topup.pk).update(created_at=travel.now().replace(year=2025))
    seconds(sim, 11)
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.UNKNOWN and topup.follow_up_at is None
    page = finance_client.get(PAGE).text
    assert "No charge was found in the invoice list an hour later" in page


def test_it_keeps_it_pending_with_a_note_when_cloudflare_fails_and_asks_again(
    finance_client, sim, travel
):
    topup = pending(finance_client, sim)
    sim.set_fault(STATUS_CALLS, "error", status=503)
    seconds(sim, 11)
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.PENDING
    assert topup.follow_up_note.startswith("Cloudflare could not be asked where it stands:")
    assert "The dashboard asks again at 12:30 UTC." in topup.follow_up_note
    # A page load asks too, and fails too: the page says both, and shows no error page.
    page = finance_client.get(PAGE).text
    assert "Cloudflare could not be asked where it stands:" in page
    assert "The dashboard asks again at 12:30 UTC." in page
    sim.clear_faults()
    calls = sim.calls[STATUS_CALLS]
    seconds(sim, 11)
    worker_round()
    assert sim.calls[STATUS_CALLS] == calls  # 30 s after a failure, not before
    seconds(sim, 20)
    worker_round()
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED and topup.follow_up_note == ""


def test_it_keeps_the_live_status_on_a_reload(finance_client, admin_client, sim):
    sim.topup_settle_seconds = 30
    topup = pending(finance_client, sim)
    # The address after an HTMX top-up is the page's own, without ``?topup=``.
    for client in (finance_client, admin_client):
        page = client.get(PAGE).text
        assert "Cloudflare is processing the payment of $25.00" in page
        status_url = reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk])
        assert f'hx-get="{status_url}" hx-trigger="every 2s"' in page
    sim.advance_clock(31)
    cache.clear()
    page = finance_client.get(PAGE).text
    assert "Done: $25.00 was added to the balance." in page
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED
    # Once it is settled, a later visit shows the plain page.
    assert "Done: $25.00" not in finance_client.get(PAGE).text


@pytest.mark.real_jobs
def test_it_follows_up_once_with_two_workers_at_once(finance_client, sim, travel):
    topup = pending(finance_client, sim)
    seconds(sim, 11)
    make_due()
    at_once(2, lambda _n, _barrier: tasks.run_once())
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED
    assert sim.calls[STATUS_CALLS] == 1
    settled = AuditEvent.objects.filter(username="dashboard follow-up")
    assert settled.count() == 1


def test_it_adopts_a_topup_whose_sender_died_and_never_sends_it_again(finance, sim):
    topup = Topup.objects.create(
        account_id=ACCOUNT_ID,
        idempotency_key="0" * 32,
        amount=Decimal(40),
        created_by=finance,
        username="frank",
        created_at=timezone.now() - timedelta(minutes=6),
    )
    recent = Topup.objects.create(
        account_id=ACCOUNT_ID, idempotency_key="1" * 32, amount=Decimal(30), username="frank"
    )
    said: list[str] = []
    worker_round(said)
    topup.refresh_from_db()
    assert topup.status == Topup.Status.UNKNOWN
    assert topup.error.startswith("The dashboard stopped while sending it to Cloudflare")
    (line,) = said
    assert line.startswith(
        f"top-up {topup.pk}: unknown. No charge of this amount was found in the invoice list yet."
    )
    recent.refresh_from_db()
    assert recent.status == Topup.Status.CREATING  # still being sent, perhaps
    (event,) = AuditEvent.objects.filter(outcome=AuditEvent.Outcome.UNKNOWN)
    assert event.username == "dashboard follow-up" and event.after == {"amount": "40.00"}
    assert sim.calls["POST topup"] == 0
