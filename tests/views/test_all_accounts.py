"""The "All accounts" page: one row per granted account, read in parallel."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils.html import escape

from billing_api.simulator.state import Invoice
from dashboard.models import AlertRule
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, SIMULATOR_NOW, hold

STAGING = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"

NOW = datetime.fromtimestamp(SIMULATOR_NOW, UTC)
URL = "/accounts/"

pytestmark = pytest.mark.usefixtures("frozen_clock")


def row(html: str, name: str) -> str:
    match = re.search(rf"<tr>\s*<th scope=\"row\"><a [^>]*>{name}</a>.*?</tr>", html, re.S)
    assert match, f"no row for {name}"
    return match.group(0)


def test_it_lists_balance_spend_burn_and_runway_per_account(lead_client, sim):
    response = lead_client.get(URL)
    assert response.status_code == 200
    production = row(response.text, "Production")
    assert re.search(r"\$[\d,]+\.\d\d/day", production)
    assert "Kept funded by auto top-up" in production  # seeded with card and rule
    research = row(response.text, "Research")  # seeded with no card and no rule
    assert "Zero around" in research or "At or below zero" in research
    assert "Staging" in response.text


def test_it_reads_every_account_once(client, lead, sim):
    client.force_login(lead)
    client.get(URL)
    assert sim.calls == {"GET credit-balance": 3, "GET usage-history": 3}


def test_it_reads_the_invoice_history_once_per_account_for_finance(client, finance, sim):
    client.force_login(finance)
    client.get(URL)
    client.get(f"/accounts/{ACCOUNT_ID}/invoices/")
    # Each history read once, page by page (20 a page); the Invoices page shares it.
    pages = sum(
        max(1, math.ceil(len(sim.account(account_id).invoices) / 20))
        for account_id in (ACCOUNT_ID, OTHER_ACCOUNT_ID, STAGING)
    )
    assert pages == 5
    assert sim.calls == {
        "GET credit-balance": 3,
        "GET usage-history": 3,
        "GET invoice-history": pages,
        "GET invoice-preview": 1,
    }


def test_it_shares_its_reads_with_the_overview(client, finance, sim):
    client.force_login(finance)
    client.get(URL)
    client.get(f"/accounts/{ACCOUNT_ID}/", {"partial": "runway-card"})
    assert sim.calls["GET usage-history"] == 3


def test_it_shows_a_failure_in_the_row_it_concerns(lead_client, sim):
    sim.set_fault("GET credit-balance", "error", status=500, times=1)
    response = lead_client.get(URL)
    assert response.status_code == 200
    failing = [n for n in ("Production", "Research") if "having trouble" in row(response.text, n)]
    assert len(failing) == 1


def test_it_shows_a_negative_balance_in_red(lead_client, sim):
    sim.account(OTHER_ACCOUNT_ID).balance = -250.0
    research = row(lead_client.get(URL).text, "Research")
    assert '<td class="num negative" data-label="Balance">\u2212$2.50</td>' in research
    assert "At or below zero" in research


def test_it_marks_stale_rows(lead_client, sim, settings):
    settings.BILLING_CACHE_SECONDS = 0
    lead_client.get(URL)
    sim.set_fault("*", "error", status=503)
    production = row(lead_client.get(URL).text, "Production")
    assert re.search(r"As of \d\d:\d\d, Cloudflare is not answering", production)
    assert "$" in production


def test_it_sends_the_table_at_the_deadline(lead_client, sim, settings):
    # The usage calls cannot answer before the test ends (which releases them and waits for
    # their reads), so the table goes without them; nothing else is looked at.
    settings.BILLING_PAGE_DEADLINE = 0.05
    hold(sim, "GET usage-history")
    response = lead_client.get(URL)
    assert response.status_code == 200
    assert f'Still loading. <a href="{URL}">Reload</a>' in row(response.text, "Production")


def test_it_escapes_hostile_strings(lead_client, sim):
    sim.set_fault("*", "hostile")
    response = lead_client.get(URL)
    assert response.status_code == 200
    assert "<img" not in response.text and "<script>" not in response.text


def test_it_says_when_no_account_is_granted(client, outsider, sim):
    from dashboard.models import AccountAccess

    AccountAccess.objects.filter(user=outsider).delete()
    client.force_login(outsider)
    response = client.get(URL)
    assert "You have not been given access to any account." in response.text
    assert sum(sim.calls.values()) == 0


def test_it_names_the_time_zone_of_the_month(lead_client, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    response = lead_client.get(URL)
    assert "over 1 Jun 00:00–10 Jun 21:00, Asia/Tokyo" in response.text
    assert escape("Times are shown in Asia/Tokyo.") in response.text


def test_it_dates_the_runway_at_the_7_day_rate(lead_client, sim):
    state = sim.account(OTHER_ACCOUNT_ID)
    midnight = NOW.replace(hour=0, minute=0)
    start, end = midnight - timedelta(days=7), midnight
    cents = sum(
        state.hour_usage(h)
        for h in range(int(start.timestamp()) // 3600, int(end.timestamp()) // 3600)
    )
    state.balance = cents / 7 * 3  # three days' worth
    research = row(lead_client.get(URL).text, "Research")
    assert f'Zero around <time datetime="{(NOW + timedelta(days=3)).date()}"' in research


# ---------------------------------------------------------------- what needs attention


def attention(html: str) -> str:
    match = re.search(r'<section id="attention-list".*?</section>', html, re.S)
    assert match, "no attention list on the page"
    return match.group(0)


def paid_up(sim, account_id: str) -> None:
    for invoice in sim.account(account_id).invoices:
        invoice.status = "paid"


def test_it_lists_what_needs_attention_per_account(finance_client, sim):
    for account_id in (ACCOUNT_ID, OTHER_ACCOUNT_ID, STAGING):
        paid_up(sim, account_id)
    created = int((NOW - timedelta(days=87)).timestamp())
    sim.account(ACCOUNT_ID).invoices.insert(
        0, Invoice("in_1septembr", 5_000, created, "manual", "finance@example.com", "open")
    )
    AlertRule.objects.create(
        account_id=OTHER_ACCOUNT_ID, kind=AlertRule.Kind.SPEND_SPIKE, factor=2, active=True
    )
    response = finance_client.get(URL)
    listed = attention(response.text)
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", listed))
    # Production's only problem is the open invoice; Research (no card, no rule) has three.
    assert (
        "Production" in words
        and "An invoice for $50.00, issued 15 Mar 2026, is open for 87 days." in words
    )
    research = words.split("Research")[1]
    assert research.index("No card is on file") < research.index("1 alert is firing")
    assert research.index("1 alert is firing") < research.index("Auto top-up is off")
    assert f'href="/accounts/{ACCOUNT_ID}/invoices/"' in listed
    assert f'href="/accounts/{OTHER_ACCOUNT_ID}/"' in listed
    # Before the table, where it is seen first.
    assert response.text.index('id="attention-list"') < response.text.index("<table")


def test_it_shows_no_attention_list_when_all_is_well(finance_client, sim, settings):
    for account_id in (ACCOUNT_ID, OTHER_ACCOUNT_ID, STAGING):
        paid_up(sim, account_id)
        sim.account(account_id).balance = 10_000_000  # cents: years of credit
    # A card and an auto top-up rule everywhere: nothing needs anyone.
    production = sim.account(ACCOUNT_ID)
    for account_id in (OTHER_ACCOUNT_ID, STAGING):
        other = sim.account(account_id)
        other.payment_method = production.payment_method
        other.topup_config.amount = 5_000
        other.topup_config.threshold = 1_000
    response = finance_client.get(URL)
    assert "Needs attention" not in response.text
    assert 'id="attention-list"' not in response.text
