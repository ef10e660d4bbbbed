"""What needs attention, on the overview (dashboard/services/attention.py): most urgent
first, a link to where to act only when the reader's role may open it, nothing when all is
well."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from billing_api.simulator import Simulator
from billing_api.simulator.state import Invoice
from dashboard.models import AlertRule, Topup
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, SIMULATOR_NOW, wait_for_background_reads
from tests.views.test_overview import text

NOW = datetime.fromtimestamp(SIMULATOR_NOW, UTC)
RESEARCH = f"/accounts/{OTHER_ACCOUNT_ID}/"  # seeded with no card and no auto top-up
PRODUCTION = f"/accounts/{ACCOUNT_ID}/"  # seeded with a card and an auto top-up rule

pytestmark = pytest.mark.usefixtures("frozen_clock")


def attention(html: str) -> str:
    match = re.search(r'<section id="attention-list".*?</section>', html, re.S)
    assert match, "no attention list on the page"
    return match.group(0)


def settled(client: Client, url: str) -> Any:
    """The overview once every card is in. On a cold page the attention list loads itself
    (the invoice history comes in pages, and the page does not wait for them)."""
    client.get(url)
    wait_for_background_reads()
    return client.get(url)


def items(html: str) -> list[str]:
    return [text(li) for li in re.findall(r"<li[^>]*>.*?</li>", attention(html), re.S)]


def per_day(sim: Simulator, account_id: str) -> Decimal:
    """The simulator's spend per day over the last 7 complete UTC days, in dollars."""
    midnight = int(NOW.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) // 3600
    state = sim.account(account_id)
    hours = range(midnight - 7 * 24, midnight)
    cents = sum((Decimal(str(state.hour_usage(h))) for h in hours), Decimal(0))
    return cents / 100 / 7


def days_of_credit(sim: Simulator, account_id: str, days: float) -> None:
    sim.account(account_id).balance = float(per_day(sim, account_id) * Decimal(days) * 100)


def all_well(sim: Simulator, account_id: str) -> None:
    for invoice in sim.account(account_id).invoices:
        invoice.status = "paid"


def open_invoice(sim: Simulator, account_id: str, days_ago: int, cents: int) -> None:
    created = int((NOW - timedelta(days=days_ago)).timestamp())
    sim.account(account_id).invoices.append(
        Invoice("in_1septembr", cents, created, "manual", "finance@example.com", status="open")
    )
    sim.account(account_id).invoices.sort(key=lambda i: i.created)


def firing(account_id: str, kind: str, **fields: object) -> AlertRule:
    return AlertRule.objects.create(
        account_id=account_id, kind=kind, created_by="ada", active=True, **fields
    )


def test_it_lists_what_needs_action_most_urgent_first(finance_client, sim):
    # The account of the report: no card, auto top-up off, 12 days of credit, two alerts
    # firing, an invoice open since March.
    all_well(sim, OTHER_ACCOUNT_ID)
    days_of_credit(sim, OTHER_ACCOUNT_ID, 12.2)
    firing(OTHER_ACCOUNT_ID, AlertRule.Kind.BALANCE_BELOW, amount=Decimal(500), last_seen="x")
    firing(OTHER_ACCOUNT_ID, AlertRule.Kind.SPEND_SPIKE, factor=Decimal(2))
    open_invoice(sim, OTHER_ACCOUNT_ID, 87, 5_000)
    response = settled(finance_client, RESEARCH)
    assert response.status_code == 200
    found = items(response.text)
    assert [line.split(":")[0].split(" ")[0] for line in found] == [
        "No", "About", "2", "Auto", "An",
    ]  # fmt: skip
    assert found[0].startswith("No card is on file: no top-up can be charged")
    assert "About 12 days of credit left at the 7-day rate, under 14 days (the default)" in found[1]
    assert found[2].startswith("2 alerts are firing: Balance below an amount")
    assert found[3].startswith("Auto top-up is off")
    assert "An invoice for $50.00, issued 15 Mar 2026, is open for 87 days." in found[4]
    # On the page, the list comes before the cards.
    assert response.text.index('id="attention-list"') < response.text.index('id="balance-card"')


def test_it_shows_nothing_when_all_is_well(finance_client, sim):
    all_well(sim, ACCOUNT_ID)
    response = settled(finance_client, PRODUCTION)
    assert '<div id="attention-list"></div>' in response.text
    assert "Needs attention" not in response.text


def test_it_takes_the_runway_threshold_from_the_runway_alert_rule(finance_client, sim):
    all_well(sim, OTHER_ACCOUNT_ID)
    days_of_credit(sim, OTHER_ACCOUNT_ID, 17.2)
    assert not any("credit left" in line for line in items(settled(finance_client, RESEARCH).text))
    AlertRule.objects.create(
        account_id=OTHER_ACCOUNT_ID, kind=AlertRule.Kind.RUNWAY_BELOW, days=20, created_by="ada"
    )
    found = items(settled(finance_client, RESEARCH).text)
    assert any(
        "About 17 days of credit left at the 7-day rate, under 20 days (your runway alert)" in line
        for line in found
    ), found


def test_it_says_a_balance_below_zero_first(finance_client, sim):
    sim.account(OTHER_ACCOUNT_ID).balance = -1_000
    found = items(settled(finance_client, RESEARCH).text)
    assert found[0].startswith("The balance is at or below zero")


def test_it_says_the_auto_topup_failed(admin_client, sim):
    all_well(sim, ACCOUNT_ID)
    config = sim.account(ACCOUNT_ID).topup_config
    config.error, config.disabled_reason = "Your card was declined.", "card_declined"
    html = settled(admin_client, PRODUCTION).text
    assert items(html)[0] == (
        "Auto top-up failed: the balance will not be refilled until it is fixed. "
        "Fix the auto top-up rule"
    )
    assert f'href="/accounts/{ACCOUNT_ID}/auto-top-up/"' in attention(html)


def test_it_lists_top_ups_pending_or_of_unknown_outcome(finance_client, finance, sim):
    all_well(sim, ACCOUNT_ID)
    for status, key in ((Topup.Status.PENDING, "a"), (Topup.Status.UNKNOWN, "b")):
        Topup.objects.create(
            account_id=ACCOUNT_ID,
            idempotency_key=key * 32,
            amount=Decimal("30.00"),
            username="frank",
            status=status,
            created_at=NOW - timedelta(minutes=12),
        )
    Topup.objects.create(
        account_id=ACCOUNT_ID, idempotency_key="c" * 32, amount=Decimal(99), username="frank",
        status=Topup.Status.COMPLETED,
    )  # fmt: skip
    html = settled(finance_client, PRODUCTION).text
    assert items(html) == [
        "A $30.00 top-up by frank, made 12 minutes ago, is pending. See the top-ups",
        "A $30.00 top-up by frank, made 12 minutes ago, is of unknown outcome. See the top-ups",
    ]
    assert f'href="/accounts/{ACCOUNT_ID}/topups/"' in attention(html)


def test_it_links_only_to_pages_the_role_may_open(lead_client, admin_client, sim):
    days_of_credit(sim, OTHER_ACCOUNT_ID, 5)
    open_invoice(sim, OTHER_ACCOUNT_ID, 87, 5_000)
    firing(OTHER_ACCOUNT_ID, AlertRule.Kind.BALANCE_BELOW, amount=Decimal(500))
    lead_list = attention(settled(lead_client, RESEARCH).text)
    # The team lead may open none of the pages where these are acted on, nor see invoices.
    assert "invoice" not in lead_list.lower()
    for page in ("topups", "alerts", "auto-top-up", "invoices"):
        assert f"/{page}/" not in lead_list
    assert "Top up</a>" not in lead_list and "About 5 days of credit left" in lead_list
    assert "No card is on file" in lead_list and "dash.cloudflare.com" not in lead_list
    admin_list = attention(settled(admin_client, RESEARCH).text)
    for page in ("alerts", "auto-top-up", "invoices"):
        assert f'href="/accounts/{OTHER_ACCOUNT_ID}/{page}/"' in admin_list
    assert 'href="https://dash.cloudflare.com/' in admin_list
    # With a card to charge, the short runway offers a top-up too.
    sim.account(OTHER_ACCOUNT_ID).payment_method = sim.account(ACCOUNT_ID).payment_method
    cache.clear()  # the balance read is kept for BILLING_CACHE_SECONDS
    admin_list = attention(settled(admin_client, RESEARCH).text)
    assert f'href="/accounts/{OTHER_ACCOUNT_ID}/topups/new/"' in admin_list


def test_it_answers_the_list_alone(finance_client, sim):
    response = finance_client.get(RESEARCH, {"partial": "attention-list"})
    assert response.status_code == 200
    assert response.text.strip().startswith('<section id="attention-list"')
    assert 'id="balance-card"' not in response.text


def test_it_keeps_what_it_knows_when_cloudflare_fails(finance_client, sim):
    sim.set_fault("GET credit-balance", "error", status=500)
    firing(OTHER_ACCOUNT_ID, AlertRule.Kind.BALANCE_BELOW, amount=Decimal(500))
    response = settled(finance_client, RESEARCH)
    assert response.status_code == 200
    listed = attention(response.text)
    assert "1 alert is firing: Balance below an amount." in text(listed)
    assert "Not every check could be made: Cloudflare" in text(listed)


def test_it_offers_no_top_up_where_no_card_can_pay_and_reads_alerts_as_words(finance_client, sim):
    all_well(sim, OTHER_ACCOUNT_ID)
    days_of_credit(sim, OTHER_ACCOUNT_ID, 12.2)
    firing(OTHER_ACCOUNT_ID, AlertRule.Kind.AUTO_TOPUP_FAILED, last_seen="Auto top-up is off.")
    listed = attention(settled(finance_client, RESEARCH).text)
    found = items(listed)
    runway = next(line for line in found if "credit left" in line)
    # Research has no card: the card item says what to do; "Top up" could only fail.
    assert "Top up" not in runway
    assert f'href="/accounts/{OTHER_ACCOUNT_ID}/topups/new/"' not in listed
    alert = next(line for line in found if "firing" in line)
    assert "(Auto top-up is off)" in alert and "now " not in alert and ".)" not in alert
