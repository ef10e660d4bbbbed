"""The overview page and its cards, against the simulator."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.utils.html import escape

from billing_api.simulator import HOSTILE_HTML, Simulator
from dashboard.infra import billing
from tests.conftest import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    OVERVIEW_URL,
    SAFETY_TIMEOUT,
    SIMULATOR_NOW,
    ReleaseWhenInFlight,
    hold,
    wait_for_background_reads,
)

NOW = datetime.fromtimestamp(SIMULATOR_NOW, UTC)
CARDS = ("balance-card", "runway-card", "spend-card", "limit-card", "invoice-card")
HTMX = {"HX-Request": "true", "HX-Target": "balance-card"}

pytestmark = pytest.mark.usefixtures("frozen_clock")


def account(sim: Simulator):
    """The simulator's mutable state of the account the dashboard shows."""
    return sim.account(ACCOUNT_ID)


def balance_text(html: str) -> str:
    match = re.search(r'<p class="balance[^"]*">([^<]*)</p>', html)
    assert match, "no balance on the page"
    return match.group(1)


def card(html: str, card_id: str) -> str:
    """The HTML of one card (or of the page-level banner)."""
    if card_id == "topup-banner":
        match = re.search(r'<div id="topup-banner".*?(?=<div class="cards">|\Z)', html, re.S)
    else:
        match = re.search(rf'<section id="{card_id}".*?</section>', html, re.S)
    assert match, f"no {card_id} on the page"
    return match.group(0)


def text(html: str) -> str:
    """The words of some HTML, whitespace collapsed, entities decoded."""
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()
    return unescape(re.sub(r" ([,.;:])", r"\1", words)).replace("\xa0", " ")


def expected_spend(sim: Simulator, start: datetime, end: datetime) -> Decimal:
    """What the simulator's account spent over whole hours [start, end), in dollars."""
    state = account(sim)
    first, last = int(start.timestamp()) // 3600, int(end.timestamp()) // 3600
    cents = sum((Decimal(str(state.hour_usage(h))) for h in range(first, last)), Decimal(0))
    return cents / 100


# ---------------------------------------------------------------- the page


def test_it_redirects_home_to_the_default_account(lead_client):
    response = lead_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == OVERVIEW_URL


def test_it_shows_every_card_to_finance(finance_client):
    response = finance_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    for card_id in CARDS:
        assert f'<section id="{card_id}"' in response.text
    assert "Still loading" not in response.text


def test_it_hides_the_upcoming_invoice_from_a_team_lead(lead_client, sim):
    response = lead_client.get(OVERVIEW_URL)
    assert 'id="invoice-card"' not in response.text
    assert "Upcoming invoice" not in response.text
    assert sim.calls["GET invoice-preview"] == 0


def test_it_refuses_the_invoice_card_alone_to_a_team_lead(lead_client, sim):
    assert lead_client.get(OVERVIEW_URL, {"partial": "invoice-card"}).status_code == 403
    htmx = {"HX-Request": "true", "HX-Target": "invoice-card"}
    assert lead_client.get(OVERVIEW_URL, headers=htmx).status_code == 403
    assert sim.calls["GET invoice-preview"] == 0


def test_it_reads_each_endpoint_once_for_the_whole_page(finance_client, sim):
    finance_client.get(OVERVIEW_URL)
    finance_client.get(OVERVIEW_URL)
    assert sim.calls == {
        "GET credit-balance": 1,
        "GET usage-history": 1,
        "GET spending-limit": 1,
        "GET invoice-preview": 1,
        # The attention list's open invoices: the Invoices page's read (30 invoices, 2 pages).
        "GET invoice-history": 2,
    }


def test_it_reads_no_invoices_for_a_reader_who_may_not_see_them(lead_client, sim):
    lead_client.get(OVERVIEW_URL)
    assert sim.calls["GET invoice-history"] == 0


def test_it_names_the_time_zone(lead_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    response = lead_client.get(OVERVIEW_URL)
    assert "Times are shown in Europe/Berlin." in response.text
    assert "per day over 3–9 Jun, complete days, Europe/Berlin" in response.text


def test_it_refuses_a_post(lead_client):
    assert lead_client.post(OVERVIEW_URL).status_code == 405


def test_it_does_not_know_an_account_that_is_not_configured(lead_client):
    response = lead_client.get("/accounts/" + "f" * 32 + "/")
    assert response.status_code == 404


def test_it_does_not_read_a_malformed_account_id(lead_client):
    assert lead_client.get("/accounts/not-an-account/").status_code == 404


def test_it_sends_a_strict_content_security_policy(finance_client):
    response = finance_client.get(OVERVIEW_URL)
    policy = response["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy
    assert " style=" not in response.text
    assert "<script>" not in response.text


# ---------------------------------------------------------------- partials


@pytest.mark.parametrize("card_id", [*CARDS, "topup-banner"])
def test_it_answers_the_partial_query_with_the_card_alone(finance_client, card_id):
    response = finance_client.get(OVERVIEW_URL, {"partial": card_id})
    assert response.status_code == 200
    assert re.match(rf'<(section|div) id="{card_id}"', response.text.lstrip())
    assert "<html" not in response.text
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize("card_id", [*CARDS, "topup-banner"])
def test_it_answers_an_htmx_request_with_the_card_it_targets(finance_client, card_id):
    response = finance_client.get(
        OVERVIEW_URL, headers={"HX-Request": "true", "HX-Target": card_id}
    )
    assert response.status_code == 200
    assert re.match(rf'<(section|div) id="{card_id}"', response.text.lstrip())
    assert "<html" not in response.text
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize("card_id", CARDS)
def test_it_renders_each_card_the_same_alone_and_in_the_page(finance_client, card_id):
    page = finance_client.get(OVERVIEW_URL).text
    alone = finance_client.get(OVERVIEW_URL, {"partial": card_id}).text
    assert text(card(alone, card_id)) == text(card(page, card_id))


@pytest.mark.parametrize("card_id", CARDS)
def test_it_gives_each_card_a_refresh_control_with_a_loading_indicator(finance_client, card_id):
    html = card(finance_client.get(OVERVIEW_URL).text, card_id)
    assert f'hx-get="{OVERVIEW_URL}?partial={card_id}"' in html
    assert f'hx-target="#{card_id}"' in html
    assert f'hx-indicator="#{card_id}-busy"' in html
    assert f'id="{card_id}-busy" class="htmx-indicator spinner"' in html
    assert f'<a class="refresh" href="{OVERVIEW_URL}"' in html  # works without JavaScript


def test_it_answers_a_normal_request_with_the_full_page(lead_client):
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert "<html" in response.text
    assert "HX-Request" in response["Vary"]
    assert "Log out" in response.text


@pytest.mark.parametrize("partial", ["nope", "", "page", "card-refresh", "../base.html"])
def test_it_refuses_an_unknown_partial(lead_client, partial):
    assert lead_client.get(OVERVIEW_URL, {"partial": partial}).status_code == 400


def test_it_refuses_an_htmx_target_that_is_no_card(lead_client):
    headers = {"HX-Request": "true", "HX-Target": "main"}
    assert lead_client.get(OVERVIEW_URL, headers=headers).status_code == 400


def test_it_reads_only_what_the_card_asked_for_needs(finance_client, sim):
    finance_client.get(OVERVIEW_URL, {"partial": "spend-card"})
    assert sim.calls == {"GET usage-history": 1}


# ---------------------------------------------------------------- parallel, deadline, lazy


def test_it_sends_the_page_at_the_deadline_with_late_cards_loading_themselves(
    lead_client, sim, settings
):
    # The usage call cannot answer before the release below, so the page must go without it;
    # the deadline is ample for the calls that are not held.
    settings.BILLING_PAGE_DEADLINE = 1.0
    hold(sim, "GET usage-history", times=1)
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert balance_text(response.text)  # the fast card is there
    for card_id in ("runway-card", "spend-card", "limit-card"):
        html = card(response.text, card_id)
        assert "Still loading…" in html
        assert f'hx-get="{OVERVIEW_URL}?partial={card_id}" hx-trigger="load"' in html
        assert f'<a href="{OVERVIEW_URL}">Reload the page</a>' in html
        assert 'aria-busy="true"' in html
    # The late read goes on in the background and fills the cache when let through...
    assert sim.wait_for_in_flight({"GET usage-history": 1}, SAFETY_TIMEOUT)
    sim.release()
    wait_for_background_reads()
    # ...so the card that then fetches itself costs no second call.
    lazy = lead_client.get(OVERVIEW_URL, {"partial": "runway-card"})
    assert "Still loading" not in lazy.text
    assert "Last 7 days" in lazy.text
    assert sim.calls["GET usage-history"] == 1


def test_it_fetches_the_cards_reads_in_parallel(finance_client, sim, settings):
    settings.BILLING_PAGE_DEADLINE = SAFETY_TIMEOUT  # a safety bound: the page waits for all
    hold(sim, "*")
    four = {
        "GET credit-balance": 1,
        "GET usage-history": 1,
        "GET spending-limit": 1,
        "GET invoice-preview": 1,
    }
    # Each call is held until all four are out side by side.
    with ReleaseWhenInFlight(sim, four) as watch:
        response = finance_client.get(OVERVIEW_URL)
    assert watch.all_at_once
    # Every card but the attention list, which waits for the invoice history's pages.
    assert "Still loading" not in card(response.text, "balance-card")
    wait_for_background_reads()
    assert sim.calls == {**four, "GET invoice-history": 2}


def test_a_cold_page_does_not_wait_for_the_invoice_history(finance_client, sim, settings):
    # The history comes in pages, one call after the other: the page is not held up by them
    # (the cold overview stays within its slowest single call); the attention list loads
    # itself when they are in.
    settings.BILLING_PAGE_DEADLINE = 100 * SAFETY_TIMEOUT  # the page would wait for all
    hold(sim, "GET invoice-history", times=1)
    # A safety bound: were the page to wait for the history, it would get it after this.
    safety = threading.Timer(SAFETY_TIMEOUT, sim.release)
    safety.start()
    try:
        response = finance_client.get(OVERVIEW_URL)
        # Answered while the history's first page is still held.
        assert sim.in_flight == {"GET invoice-history": 1}
    finally:
        safety.cancel()
    assert f'hx-get="{OVERVIEW_URL}?partial=attention-list" hx-trigger="load"' in response.text
    assert "Still loading" not in card(response.text, "balance-card")
    sim.release()
    wait_for_background_reads()
    lazy = finance_client.get(OVERVIEW_URL, {"partial": "attention-list"})
    assert "Still loading" not in lazy.text and "hx-get" not in lazy.text
    assert sim.calls["GET invoice-history"] == 2
    # Once the history is kept, the whole page waits for it again: nothing loads itself.
    again = finance_client.get(OVERVIEW_URL)
    assert 'hx-trigger="load"' not in again.text


def test_it_lets_a_pending_banner_load_itself(lead_client, sim, settings):
    settings.BILLING_PAGE_DEADLINE = 0.05  # only what the held read decides is looked at
    hold(sim, "GET credit-balance")  # released, and its read awaited, when the test ends
    response = lead_client.get(OVERVIEW_URL)
    banner = card(response.text, "topup-banner")
    assert f'hx-get="{OVERVIEW_URL}?partial=topup-banner" hx-trigger="load"' in banner


# ---------------------------------------------------------------- balance card


def test_it_shows_the_balance_the_card_and_the_auto_topup_rule(lead_client, sim):
    state = account(sim)
    state.balance = 123456.0  # cents
    state.topup_config.threshold = 500
    state.topup_config.amount = 2000
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert balance_text(response.text) == "$1,234.56"
    assert "Visa •••• 4242" in response.text
    assert "When the balance falls below $5.00, add $20.00." in response.text
    assert "Production" in response.text


def test_it_shows_a_negative_balance_with_a_minus_sign(lead_client, sim):
    account(sim).balance = -320.0
    response = lead_client.get(OVERVIEW_URL)
    assert balance_text(response.text) == "\u2212$3.20"


def test_it_says_when_there_is_no_payment_method(lead_client, sim):
    account(sim).payment_method = None
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert "No payment method on file" in response.text
    assert "••••" not in response.text


def test_it_says_auto_topup_is_off(lead_client, sim):
    state = account(sim)
    state.topup_config.amount = None
    state.topup_config.threshold = None
    response = lead_client.get(OVERVIEW_URL)
    assert "Auto top-up is off." in response.text
    assert "When the balance falls below" not in response.text


# ---------------------------------------------------------------- auto top-up banner


def fail_auto_topup(sim: Simulator) -> datetime:
    config = account(sim).topup_config
    config.error = "Your card was declined."
    config.disabled_reason = "card_declined"
    failed_at = NOW.replace(microsecond=0) - timedelta(hours=3)
    config.last_failed_at_ms = int(failed_at.timestamp() * 1000)
    return failed_at


def test_it_warns_at_the_top_of_the_page_when_the_auto_topup_failed(lead_client, sim):
    failed_at = fail_auto_topup(sim)
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    banner = card(response.text, "topup-banner")
    assert 'role="alert"' in banner
    assert "Automatic top-up failed on" in banner
    assert failed_at.strftime("%-d %b %Y, %H:%M UTC") in banner
    assert "Your card was declined." in banner
    assert "Auto top-up was stopped because the card was declined." in banner
    assert "Stopped. The rule was: when the balance falls below" in banner
    assert response.text.index('id="topup-banner"') < response.text.index('id="balance-card"')
    assert "Failed" in card(response.text, "balance-card")


def test_it_does_not_count_a_failed_auto_topup_in_the_runway(lead_client, sim):
    fail_auto_topup(sim)
    runway_card = card(lead_client.get(OVERVIEW_URL).text, "runway-card")
    assert "Auto top-up will keep you funded" not in runway_card
    assert "Auto top-up is not counted: its last attempt failed." in runway_card
    assert "the balance reaches zero" in runway_card


def test_it_shows_no_banner_when_auto_topup_is_fine(lead_client):
    response = lead_client.get(OVERVIEW_URL)
    assert '<div id="topup-banner"></div>' in response.text


def test_it_shows_an_unknown_stop_reason_as_cloudflare_sent_it(lead_client, sim):
    account(sim).topup_config.disabled_reason = "risk_review"
    response = lead_client.get(OVERVIEW_URL)
    banner = card(response.text, "topup-banner")
    assert escape("Auto top-up was stopped. Cloudflare's reason: risk_review") in banner


# ---------------------------------------------------------------- runway card


def test_it_shows_the_7_and_30_day_burn_rates_over_complete_days(lead_client, sim):
    midnight = NOW.replace(hour=0, minute=0)
    week = expected_spend(sim, midnight - timedelta(days=7), midnight) / 7
    month = expected_spend(sim, midnight - timedelta(days=30), midnight) / 30
    runway_card = text(card(lead_client.get(OVERVIEW_URL).text, "runway-card"))
    assert round(week, 4) == Decimal("216.1537") and round(month, 4) == Decimal("215.6432")
    assert "Last 7 days $216.15 per day over 3–9 Jun, complete days, UTC" in runway_card
    assert "Last 30 days $215.64 per day over 11 May–9 Jun, complete days, UTC" in (runway_card)
    assert "today so far is not counted" in runway_card


def test_it_says_auto_topup_keeps_the_account_funded(lead_client, sim):
    state = account(sim)
    state.balance = 100_000.0  # $1,000
    state.topup_config.threshold = 50_000  # $500
    state.topup_config.amount = 100_000
    runway_card = text(card(lead_client.get(OVERVIEW_URL).text, "runway-card"))
    assert "Auto top-up will keep you funded; next top-up expected around" in runway_card
    assert "when the balance falls below $500.00" in runway_card
    assert re.search(r"it will add \$1,000\.00 about (every|once)", runway_card)


def test_it_says_a_topup_is_due_when_the_balance_is_under_the_threshold(lead_client, sim):
    state = account(sim)
    state.balance = 1000.0
    state.topup_config.threshold = 50_000
    state.topup_config.amount = 100_000
    runway_card = text(card(lead_client.get(OVERVIEW_URL).text, "runway-card"))
    assert "a top-up is due now: the balance is below the $500.00 threshold" in runway_card


def test_it_dates_the_day_the_balance_runs_out_without_auto_topup(lead_client, sim):
    state = account(sim)
    state.topup_config.amount = state.topup_config.threshold = None
    midnight = NOW.replace(hour=0, minute=0)
    per_day = expected_spend(sim, midnight - timedelta(days=7), midnight) / 7
    state.balance = float(per_day * 100 * 10)  # ten days' worth, in cents
    runway_card = text(card(lead_client.get(OVERVIEW_URL).text, "runway-card"))
    zero = (NOW + timedelta(days=10)).strftime("%a %-d %b %Y")
    assert (
        f"At $216.15 a day (the last 7 complete days), the balance reaches zero around {zero}"
    ) in runway_card


def test_it_does_not_count_auto_topup_without_a_card(client, lead, sim):
    client.force_login(lead)
    state = sim.account(OTHER_ACCOUNT_ID)  # seeded with no card
    state.topup_config.amount, state.topup_config.threshold = 1000, 500
    runway_card = card(client.get(f"/accounts/{OTHER_ACCOUNT_ID}/").text, "runway-card")
    assert "Auto top-up is not counted: there is no card on file to charge." in runway_card


def test_it_says_a_negative_balance_is_below_zero(lead_client, sim):
    state = account(sim)
    state.topup_config.amount = state.topup_config.threshold = None
    state.balance = -500.0
    runway_card = text(card(lead_client.get(OVERVIEW_URL).text, "runway-card"))
    assert "The balance is below zero." in runway_card


def test_it_says_when_nothing_was_spent(lead_client, sim):
    state = account(sim)
    state.topup_config.amount = state.topup_config.threshold = None
    history_hours = state.settled_hour - state.origin_hour
    sim.boost_usage(ACCOUNT_ID, 0.0, hours=history_hours, start=state.origin_hour * 3600)
    runway_card = text(card(lead_client.get(OVERVIEW_URL).text, "runway-card"))
    assert "Last 7 days $0.00 per day over" in runway_card
    assert "No net spend in the last 7 complete days" in runway_card


def test_it_says_when_there_is_no_complete_day_yet(lead_client, sim):
    state = account(sim)
    state.origin_hour = state.settled_hour - 5  # a new account: five hours of history
    response = lead_client.get(OVERVIEW_URL)
    runway_card = text(card(response.text, "runway-card"))
    assert "No complete day yet" in runway_card
    assert "No forecast yet: it needs at least one complete day of usage." in runway_card
    assert "Usage history starts later than the 1st" in card(response.text, "spend-card")


# ---------------------------------------------------------------- month to date


def test_it_sums_the_spend_since_the_1st_of_the_month(lead_client, sim):
    spent = expected_spend(sim, datetime(2026, 6, 1, tzinfo=UTC), NOW.replace(minute=0))
    spend_card = text(card(lead_client.get(OVERVIEW_URL).text, "spend-card"))
    assert spent == Decimal("2173.7264")
    assert "Spend this month Loading Refresh $2,173.73" in spend_card
    assert "Month to date over 1 Jun 00:00–10 Jun 12:00, UTC" in spend_card
    assert "At the 7-day burn rate, the month (1 Jun–30 Jun) comes to about $" in spend_card


def test_it_starts_the_month_at_midnight_in_the_reporting_zone(lead_client, sim, settings):
    settings.TIME_ZONE = "America/New_York"
    start = datetime(2026, 6, 1, 4, tzinfo=UTC)  # 1 June 00:00 EDT
    spent = expected_spend(sim, start, NOW.replace(minute=0))
    spend_card = text(card(lead_client.get(OVERVIEW_URL).text, "spend-card"))
    assert spent == Decimal("2154.3322")
    assert "Refresh $2,154.33" in spend_card
    assert "over 1 Jun 00:00–10 Jun 08:00, America/New_York" in spend_card


# ---------------------------------------------------------------- spending limit


def test_it_shows_the_spending_limit_and_how_much_of_it_is_used(lead_client, sim):
    limit = account(sim).spending_limit
    limit.amount, limit.duration, limit.strategy = 1_000_000, "monthly", "fixed"  # $10,000
    spent = expected_spend(sim, datetime(2026, 6, 1, tzinfo=UTC), NOW.replace(minute=0))
    limit_card = card(lead_client.get(OVERVIEW_URL).text, "limit-card")
    words = text(limit_card)
    assert "$10,000.00 per month" in words
    assert "Fixed: this calendar month" in words
    assert spent == Decimal("2173.7264")
    assert "$2,173.73 of $10,000.00 used" in words
    assert '<meter class="limit-meter" min="0" max="10000.00"' in limit_card
    assert (
        'href="https://developers.cloudflare.com/ai-gateway/features/spend-limits/"' in limit_card
    )
    assert "deprecated account-wide spending limits" in words


def test_it_says_when_the_limit_is_reached(lead_client, sim):
    limit = account(sim).spending_limit
    limit.amount, limit.duration, limit.strategy = 100, "weekly", "sliding"  # $1 a week
    words = text(card(lead_client.get(OVERVIEW_URL).text, "limit-card"))
    assert "Limit reached" in words
    assert "Sliding: the last 7 days" in words


def test_it_says_when_there_is_no_spending_limit(lead_client, sim):
    limit = account(sim).spending_limit
    limit.amount = limit.duration = limit.strategy = None
    limit_card = card(lead_client.get(OVERVIEW_URL).text, "limit-card")
    assert "No spending limit" in limit_card
    assert "spend-limits/" in limit_card
    assert "<meter" not in limit_card


def test_it_shows_an_unknown_limit_window_as_sent_and_escaped(lead_client, sim):
    limit = account(sim).spending_limit
    limit.amount, limit.duration, limit.strategy = 10_000, "<b>yearly</b>", "<i>odd</i>"
    limit_card = card(lead_client.get(OVERVIEW_URL).text, "limit-card")
    assert "&lt;b&gt;yearly&lt;/b&gt;" in limit_card
    assert "<b>yearly" not in limit_card and "<i>odd" not in limit_card
    assert "Cloudflare names a window we do not know" in limit_card


def test_it_shows_the_limit_even_when_usage_cannot_be_read(lead_client, sim):
    sim.set_fault("GET usage-history", "error", status=500)
    limit_card = text(card(lead_client.get(OVERVIEW_URL).text, "limit-card"))
    assert "per month" in limit_card
    assert "How much of the window is used is unknown:" in limit_card


# ---------------------------------------------------------------- upcoming invoice


def test_it_shows_the_upcoming_invoice_with_a_link_to_the_invoices(finance_client, sim, settings):
    settings.TIME_ZONE = "Asia/Tokyo"  # the period is Cloudflare's UTC month all the same
    invoice_card = card(finance_client.get(OVERVIEW_URL).text, "invoice-card")
    preview = account(sim).invoice_preview(SIMULATOR_NOW)
    assert preview["amount_due"] == 217_373  # cents
    assert "$2,173.73" in invoice_card
    assert "Billing period 1–30 Jun 2026" in invoice_card
    assert "Draft" in invoice_card
    assert f'href="/accounts/{ACCOUNT_ID}/invoices/"' in invoice_card
    assert invoice_card.count("<li>") == min(3, len(preview["invoice_lines"]))


# ---------------------------------------------------------------- failures


OVERVIEW_ENDPOINTS = {
    "GET credit-balance": ("balance-card", "runway-card"),
    "GET usage-history": ("runway-card", "spend-card", "limit-card"),
    "GET spending-limit": ("limit-card",),
    "GET invoice-preview": ("invoice-card",),
}
FAULTS = {
    "error": ({"status": 500}, "Cloudflare's billing service is having trouble."),
    "rate_limit": ({"retry_after": 300}, "limiting how often we may ask"),
    "hang": ({"seconds": 0}, "took too long to answer"),
    "malformed": ({}, "sent an answer we could not read"),
    "unsuccessful": ({}, "answered with an error"),
}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("endpoint", OVERVIEW_ENDPOINTS)
def test_it_states_an_upstream_failure_inside_the_affected_cards(
    finance_client, sim, endpoint, fault
):
    params, message = FAULTS[fault]
    sim.set_fault(endpoint, fault, **params)
    response = finance_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert "Traceback" not in response.text
    affected = OVERVIEW_ENDPOINTS[endpoint]
    for card_id in CARDS:
        html = card(response.text, card_id)
        if card_id in affected:
            assert escape(message) in html, card_id
        else:
            assert "notice-error" not in html and escape(message) not in html, card_id


@pytest.mark.parametrize("endpoint", OVERVIEW_ENDPOINTS)
def test_it_escapes_hostile_strings_from_any_endpoint(finance_client, sim, endpoint):
    fail_auto_topup(sim)  # so that the banner shows Cloudflare's (hostile) words
    sim.set_fault(endpoint, "hostile")
    response = finance_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert response.text.count("<script") == response.text.count('<script src="/static/')
    assert "<img" not in response.text
    assert all(hostile not in response.text for hostile in HOSTILE_HTML)
    if endpoint in ("GET credit-balance", "GET invoice-preview"):
        assert any(escape(hostile) in response.text for hostile in HOSTILE_HTML)


def test_it_escapes_hostile_strings_from_cloudflare(lead_client, sim):
    state = account(sim)
    state.topup_config.error = '<script>alert("card")</script>'
    state.topup_config.disabled_reason = '<img src=x onerror="alert(1)">'
    state.payment_method.brand = "<b>visa</b>"
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert '<script>alert("card")</script>' not in response.text
    assert "&lt;script&gt;alert(&quot;card&quot;)&lt;/script&gt;" in response.text
    assert "<img src=x" not in response.text
    assert "&lt;b&gt;visa&lt;/b&gt; •••• 4242" in response.text


def test_it_says_when_cloudflare_refuses_the_token(lead_client):
    billing.use_simulator(Simulator(seed=0, token="a-different-token", clock=lambda: SIMULATOR_NOW))
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert escape("did not accept the dashboard's API token") in card(response.text, "balance-card")


def test_it_logs_an_upstream_failure_without_the_token(lead_client, sim, caplog):
    from billing_api.simulator import DEFAULT_TOKEN

    sim.set_fault("GET credit-balance", "error", status=500)
    lead_client.get(OVERVIEW_URL)
    failures = [r for r in caplog.records if r.name == "dashboard.infra.upstream"]
    assert failures and "UpstreamError" in failures[0].getMessage()
    assert all(DEFAULT_TOKEN not in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- cache and stale data


def test_it_serves_the_cached_balance_without_asking_again(lead_client, sim):
    account(sim).balance = 1000.0
    lead_client.get(OVERVIEW_URL)
    account(sim).balance = 2000.0
    response = lead_client.get(OVERVIEW_URL)
    assert balance_text(response.text) == "$10.00"


def test_it_shows_the_last_good_figures_as_of_their_time_when_cloudflare_fails(
    lead_client, sim, settings
):
    settings.BILLING_CACHE_SECONDS = 0  # every request asks Cloudflare again
    account(sim).balance = 4200.0
    first = lead_client.get(OVERVIEW_URL)
    assert balance_text(first.text) == "$42.00"
    sim.set_fault("*", "error", status=502)
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    for card_id in ("balance-card", "runway-card", "spend-card", "limit-card"):
        words = text(card(response.text, card_id))
        assert re.search(r"As of \d\d:\d\d, Cloudflare is not answering\.", words), card_id
        assert "Cloudflare's billing service is having trouble." in words
    assert balance_text(response.text) == "$42.00"


def test_it_recovers_when_cloudflare_answers_again(lead_client, sim, settings):
    settings.BILLING_CACHE_SECONDS = 0
    settings.BILLING_ERROR_CACHE_SECONDS = 0
    sim.set_fault("GET credit-balance", "error", status=500)
    assert "having trouble" in lead_client.get(OVERVIEW_URL).text
    sim.clear_faults()
    response = lead_client.get(OVERVIEW_URL)
    assert "having trouble" not in response.text
    assert 'class="balance' in response.text


def test_it_does_not_ask_a_failing_cloudflare_again_for_every_view(lead_client, sim, settings):
    settings.BILLING_CACHE_SECONDS = 0
    sim.set_fault("GET credit-balance", "error", status=503)
    for _ in range(3):
        assert "having trouble" in lead_client.get(OVERVIEW_URL).text
    assert sim.calls["GET credit-balance"] == 1


# ---------------------------------------------------------------- prepaid credit and the invoice


def test_it_says_the_upcoming_invoice_is_drawn_from_the_prepaid_credit(finance_client, sim):
    account(sim).balance = 12_345  # cents
    words = text(card(finance_client.get(OVERVIEW_URL).text, "invoice-card"))
    preview = account(sim).invoice_preview(SIMULATOR_NOW)
    assert preview["amount_due"] == 217_373  # cents
    assert "Usage so far this period $2,173.73" in words
    assert "Usage is drawn from your prepaid credit as it happens (balance now $123.45)" in words
    assert "Nothing is charged beyond the credit unless the balance runs out" in words
    assert "Credits applied None listed by Cloudflare" in words
    assert "Total due" not in words and "remaining" not in words


def test_it_says_how_much_usage_the_credit_does_not_cover(finance_client, sim):
    account(sim).balance = -2_500
    words = text(card(finance_client.get(OVERVIEW_URL).text, "invoice-card"))
    assert "The balance is $25.00 below zero: $25.00 of usage is not covered by credit" in words
    assert "Nothing is charged beyond" not in words


def test_it_shows_the_credits_cloudflare_applied(finance_client, sim, monkeypatch):
    state = account(sim)
    preview = state.invoice_preview(SIMULATOR_NOW)
    preview["invoice_lines"][0]["pretax_credit_amounts"] = [
        {"amount": 1_000, "type": "credit_balance_transaction"},
        {"amount": 250, "type": "discount"},
    ]
    monkeypatch.setattr(state, "invoice_preview", lambda now: preview)
    words = text(card(finance_client.get(OVERVIEW_URL).text, "invoice-card"))
    assert "Credits applied $12.50" in words


def test_it_explains_the_invoice_without_the_balance_when_that_fails(finance_client, sim):
    sim.set_fault("GET credit-balance", "error", status=500)
    words = text(card(finance_client.get(OVERVIEW_URL).text, "invoice-card"))
    assert "Usage is drawn from your prepaid credit as it happens." in words
    assert "Nothing is charged beyond the credit unless the balance runs out" in words
    assert "balance now" not in words
