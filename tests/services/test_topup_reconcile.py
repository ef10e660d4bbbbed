"""A top-up whose outcome is unknown is reconciled by its charge, never sent again."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from billing_api.simulator.core import Simulator
from billing_api.simulator.state import Invoice
from dashboard.models import AuditEvent, Topup
from dashboard.services import topups as service
from tests.conftest import ACCOUNT_ID
from tests.topup_flow import confirm_data

PAGE = reverse("dashboard:topups", args=[ACCOUNT_ID])
CREATE = reverse("dashboard:topup_create", args=[ACCOUNT_ID])
CHECK = reverse("dashboard:topup_check", args=[ACCOUNT_ID])
HTMX = {"HX-Request": "true", "HX-Target": "topup-status"}


def timed_out(client: Client, sim: Simulator, amount: str = "25") -> Topup:
    """A top-up whose POST got no answer: stored unknown, without a payment id."""
    sim.set_fault("POST topup", "hang", seconds=30)
    client.post(CREATE, confirm_data(client, CREATE, amount))
    sim.clear_faults()
    topup = Topup.objects.get(amount=Decimal(amount))
    assert topup.status == Topup.Status.UNKNOWN and not topup.payment_intent_id
    return topup


def cloudflare_took(sim: Simulator, topup: Topup, *, invoice: bool = True) -> str:
    """What Cloudflare would hold had the timed-out POST arrived: the top-up, its invoice.

    The simulator's hang answers before the request is served (nothing is created), so the
    top-up is made through its state, at the moment the dashboard stored its row. Its
    invoice is open while the payment is processed; the simulator adds the paid one when it
    settles, so ``invoice=False`` leaves it to that.
    """
    account = sim.account(ACCOUNT_ID)
    cents = int(topup.amount * 100)
    made = account.create_topup(cents, sim.now(), sim.topup_settle_seconds, "api-token")
    made.created_at = topup.created_at.timestamp()
    if invoice:
        account.invoices.append(open_invoice(made.payment_intent_id, cents, topup, seconds=5))
    return made.payment_intent_id


def open_invoice(invoice_id: str, cents: int, topup: Topup, *, seconds: float) -> Invoice:
    created = int((topup.created_at + timedelta(seconds=seconds)).timestamp())
    return Invoice(invoice_id, cents, created, "manual", "api-token", status="open")


def check(client: Client, topup: Topup, **kwargs: Any) -> Any:
    return client.post(CHECK, {"topup": str(topup.pk)}, **kwargs)


def topup_events(outcome: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.TOPUP, outcome=outcome))


def test_the_timed_out_post_created_nothing_in_the_simulator(finance_client, sim):
    timed_out(finance_client, sim)
    assert sim.account(ACCOUNT_ID).topups == {}
    assert sim.calls["POST topup"] == 1


def test_check_again_finds_a_charge_cloudflare_took_then_it_completes(finance_client, sim):
    topup = timed_out(finance_client, sim)
    payment_id = cloudflare_took(sim, topup)
    response = check(finance_client, topup, headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="topup-status"')
    assert "Cloudflare is processing the payment of $25.00" in response.text
    assert "Its charge was found in the invoice list" in response.text
    assert 'hx-trigger="every 2s"' in response.text
    assert payment_id in response.text
    topup.refresh_from_db()
    assert topup.status == Topup.Status.PENDING and topup.payment_intent_id == payment_id
    (event,) = topup_events("accepted")
    assert event.after == {
        "amount": "25.00",
        "payment_intent_id": payment_id,
        "status": "pending",
        "reconciled": True,
    }
    assert event.username == "frank" and event.idempotency_key == topup.idempotency_key
    sim.advance_clock(6)
    cache.clear()
    status_url = reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk])
    done = finance_client.get(status_url, HTTP_HX_REQUEST="true").text
    assert "Done: $25.00 was added to the balance." in done
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED and topup.completed_at is not None
    # Its completion is appended once; checking again changes nothing and records nothing.
    assert [e.after["status"] for e in topup_events("accepted") if e.after] == [
        "completed",
        "pending",
    ]
    check(finance_client, topup)
    assert len(topup_events("accepted")) == 2
    assert sim.calls["POST topup"] == 1


def test_a_check_that_sees_it_complete_shows_the_balance_with_it(finance_client, sim, monkeypatch):
    topup = timed_out(finance_client, sim)
    cloudflare_took(sim, topup)
    before = balance_shown(finance_client.get(PAGE).text)
    found = service.reconcile

    def found_then_settled(*args: Any, **kwargs: Any) -> str:
        said = found(*args, **kwargs)  # pending when found...
        sim.advance_clock(6)  # ...settled by the time the status is asked in the same request
        return said

    monkeypatch.setattr(service, "reconcile", found_then_settled)
    done = check(finance_client, topup, headers=HTMX).text
    assert "Done: $25.00 was added to the balance." in done
    assert 'id="balance-summary"' in done
    assert balance_shown(done) != before


def balance_shown(page: str) -> str:
    summary = page.split('<section id="balance-summary"')[1]
    return summary.split('<p class="balance">')[1].split("</p>")[0]


def test_a_charge_that_settled_meanwhile_completes_it(finance_client, sim):
    topup = timed_out(finance_client, sim, "50")
    payment_id = cloudflare_took(sim, topup, invoice=False)
    sim.advance_clock(6)  # settles: the simulator lists its paid invoice
    response = check(finance_client, topup)
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}?topup={topup.pk}"
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED and topup.completed_at is not None
    assert topup.payment_intent_id == payment_id
    page = finance_client.get(response["Location"]).text
    assert "Done: $50.00 was added to the balance." in page
    (event,) = topup_events("accepted")
    assert event.after is not None and event.after["status"] == "completed"
    assert sim.calls["POST topup"] == 1


def test_it_reads_the_invoices_fresh_not_from_the_cache(finance_client, sim):
    topup = timed_out(finance_client, sim)
    check(finance_client, topup)  # nothing yet: the list read now is cached
    cloudflare_took(sim, topup)
    check(finance_client, topup)
    topup.refresh_from_db()
    assert topup.status == Topup.Status.PENDING


def test_no_matching_charge_leaves_it_unknown_and_says_so(finance_client, sim):
    topup = timed_out(finance_client, sim)
    account = sim.account(ACCOUNT_ID)
    # Another amount, and the same amount too early and too late: none is its charge.
    account.invoices.append(open_invoice("in_1other", 3000, topup, seconds=5))
    account.invoices.append(open_invoice("in_1early", 2500, topup, seconds=-180))
    account.invoices.append(open_invoice("in_1late", 2500, topup, seconds=3700))
    page = check(finance_client, topup, follow=True).text
    assert "No charge of this amount was found in the invoice list yet." in page
    assert 'name="topup"' in page and "Check again" in page
    Topup.objects.filter(pk=topup.pk).update(created_at=topup.created_at - timedelta(hours=2))
    topup.refresh_from_db()
    for invoice in account.invoices[-3:]:
        invoice.created -= 2 * 3600
    page = check(finance_client, topup, follow=True).text
    assert "No charge was found in the invoice list an hour later" in page
    assert "Check Cloudflare’s dashboard before trying again." in page.replace("&#x27;", "’")
    topup.refresh_from_db()
    assert topup.status == Topup.Status.UNKNOWN and not topup.payment_intent_id
    assert topup_events("accepted") == []
    assert sim.calls["POST topup"] == 1 and sim.calls["POST topup/status"] == 0


def test_several_charges_of_the_amount_leave_it_unknown(finance_client, sim):
    topup = timed_out(finance_client, sim)
    cloudflare_took(sim, topup)
    sim.account(ACCOUNT_ID).invoices.append(open_invoice("in_1twin", 2500, topup, seconds=20))
    response = check(finance_client, topup, headers=HTMX)
    assert "Several charges of this amount were found; check the invoice list." in response.text
    topup.refresh_from_db()
    assert topup.status == Topup.Status.UNKNOWN and not topup.payment_intent_id
    assert topup_events("accepted") == []
    assert sim.calls["POST topup"] == 1


def test_a_charge_another_top_up_holds_is_not_a_candidate(finance_client, sim):
    topup = timed_out(finance_client, sim)
    payment_id = cloudflare_took(sim, topup)
    sim.account(ACCOUNT_ID).invoices.append(open_invoice("in_1taken", 2500, topup, seconds=20))
    Topup.objects.create(
        account_id=ACCOUNT_ID,
        idempotency_key=uuid.uuid4().hex,
        amount=Decimal(25),
        username="frank",
        status=Topup.Status.COMPLETED,
        payment_intent_id="in_1taken",
    )
    check(finance_client, topup)
    topup.refresh_from_db()
    assert topup.status == Topup.Status.PENDING and topup.payment_intent_id == payment_id


@pytest.mark.parametrize("endpoint", ["GET invoice-history", "POST topup/status"])
def test_an_upstream_failure_leaves_it_unknown(finance_client, sim, endpoint):
    topup = timed_out(finance_client, sim)
    cloudflare_took(sim, topup)
    sim.set_fault(endpoint, "error", status=502)
    response = check(finance_client, topup, headers=HTMX)
    assert "The check could not be made" in response.text
    topup.refresh_from_db()
    assert topup.status == Topup.Status.UNKNOWN and not topup.payment_intent_id
    assert topup_events("accepted") == []
    assert sim.calls["POST topup"] == 1


def test_it_refuses_a_user_without_permission_and_asks_nothing(lead_client, sim, finance):
    other = Client()
    other.force_login(finance)
    topup = timed_out(other, sim)
    cloudflare_took(sim, topup)
    calls = sim.calls
    response = check(lead_client, topup)
    assert response.status_code == 403
    assert sim.calls == calls
    topup.refresh_from_db()
    assert topup.status == Topup.Status.UNKNOWN
    (event,) = topup_events("forbidden")
    assert event.username == "lena"


def test_it_refuses_a_check_without_csrf(finance, sim):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(finance)
    plain = Client()
    plain.force_login(finance)
    topup = timed_out(plain, sim)
    cloudflare_took(sim, topup)
    assert check(strict, topup).status_code == 403
    topup.refresh_from_db()
    assert topup.status == Topup.Status.UNKNOWN


def test_it_answers_404_for_another_or_no_top_up(finance_client, sim):
    assert finance_client.post(CHECK, {"topup": "999"}).status_code == 404
    assert finance_client.post(CHECK, {"topup": "x"}).status_code == 404
    assert finance_client.get(CHECK).status_code == 405


def test_the_page_checks_a_minute_old_unknown_top_up_once_a_minute(finance_client, sim):
    topup = timed_out(finance_client, sim)
    payment_id = cloudflare_took(sim, topup, invoice=False)
    sim.reset_calls()
    finance_client.get(PAGE)
    assert sim.calls["GET invoice-history"] == 0, "too recent to look for"
    Topup.objects.filter(pk=topup.pk).update(created_at=topup.created_at - timedelta(minutes=2))
    finance_client.get(PAGE)
    reads = sim.calls["GET invoice-history"]
    assert reads >= 1
    topup.refresh_from_db()
    assert topup.status == Topup.Status.UNKNOWN  # nothing listed yet
    finance_client.get(PAGE)
    finance_client.get(f"{PAGE}?topup={topup.pk}")
    assert sim.calls["GET invoice-history"] == reads, "checked at most once a minute"
    # The minute passes; its charge is listed now.
    sim.advance_clock(6)
    cache.delete(service.check_marker(topup))
    page = finance_client.get(f"{PAGE}?topup={topup.pk}").text
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED and topup.payment_intent_id == payment_id
    assert "Done: $25.00 was added to the balance." in page
    assert "Its charge was found in the invoice list" in page
    assert sim.calls["POST topup"] == 0  # since reset_calls: never sent again


def test_the_page_does_not_check_for_a_viewer_when_nothing_is_unknown(finance_client, sim):
    finance_client.get(PAGE)
    assert sim.calls["GET invoice-history"] == 0
