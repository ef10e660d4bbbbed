"""The Invoices page: the table, its filter and pages, the upcoming invoice, HTMX, bad input."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape

from billing_api.simulator import HOSTILE_HTML, HOSTILE_URL, Simulator
from billing_api.simulator import state as sim_state
from tests.conftest import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    SAFETY_TIMEOUT,
    hold,
    wait_for_background_reads,
)

URL = f"/accounts/{ACCOUNT_ID}/invoices/"
TABLE = {"HX-Request": "true", "HX-Target": "invoice-table"}
UPCOMING = {"HX-Request": "true", "HX-Target": "upcoming-invoice"}


def history(sim: Simulator, type: str = "all", account_id: str = ACCOUNT_ID) -> list[Any]:
    """The simulator's invoices of ``type``, newest first, as Cloudflare lists them."""
    invoices = sorted(sim.account(account_id).invoices, key=lambda i: (i.created, i.id))
    invoices.reverse()
    return [i for i in invoices if type == "all" or i.origin == type]


def refusing(
    sim: Simulator, monkeypatch: Any, endpoint: str, status: int, code: int, message: str
) -> None:
    """The simulator answers ``endpoint`` with Cloudflare's error envelope; a request for
    ``invoice-history`` only when it names a page (a later one)."""
    handle = sim.handle

    def answer(method: str, path: str, query: dict[str, str], *args: Any, **kwargs: Any) -> Any:
        if path.endswith(endpoint) and (endpoint != "invoice-history" or query.get("page")):
            errors = [{"code": code, "message": message}]
            body = json.dumps({"success": False, "errors": errors, "result": None})
            return status, {"Content-Type": "application/json"}, body.encode()
        return handle(method, path, query, *args, **kwargs)

    monkeypatch.setattr(sim, "handle", answer)


def row_ids(html: str) -> list[str]:
    """The invoice ids of the table's rows, in order (from their PDF links)."""
    return re.findall(r"https://pay\.stripe\.com/invoice/acct_1Simulated/(in_1\w+)/pdf", html)


def table_section(html: str) -> str:
    start = html.index('<div id="invoice-table"')
    return html[start : html.index("</section>", start)]


def upcoming_section(html: str) -> str:
    start = html.index('<section id="upcoming-invoice"')
    return html[start : html.index("</section>", start)]


def assert_nothing_hostile(html: str) -> None:
    assert html.count("<script") == html.count('<script src="/static/')
    assert "<img" not in html
    assert all(hostile not in html for hostile in HOSTILE_HTML)
    links = re.findall(r'(?:href|src|action|hx-get)="([^"]*)"', html)
    assert links, "the page has links"
    for link in links:
        # "#content": the skip link, a place in the page itself.
        assert link.startswith(("/", "https://pay.stripe.com/")) or link == "#content", link


# ---------------------------------------------------------------- the page


def test_it_lists_the_newest_invoices_first_with_everything_finance_needs(finance_client, sim):
    response = finance_client.get(URL)
    assert response.status_code == 200
    newest = history(sim)
    assert row_ids(response.text) == [i.id for i in newest[:20]]
    assert "Invoices 1–20 of 30, page 1 of 2" in response.text
    table = table_section(response.text)
    for header in ("Date", "Origin", "Description", "Amount due", "Paid", "Remaining"):
        assert f">{header}</th>" in table
    assert "Auto top-up" in table and "Manual" in table
    assert "AI Gateway Unified Billing credits (auto top-up)" in table
    assert '<span class="badge badge-ok">Paid</span>' in table
    assert ">USD</td>" in table
    first = newest[0]
    assert f"${first.amount / 100:,.2f}" in table
    assert 'target="_blank" rel="noopener noreferrer"' in table


def test_it_shows_dates_in_the_reporting_time_zone(finance_client, sim, settings):
    settings.TIME_ZONE = "Pacific/Auckland"
    first = history(sim)[0]
    created = datetime.fromtimestamp(first.created, tz=UTC)
    from zoneinfo import ZoneInfo

    local = created.astimezone(ZoneInfo("Pacific/Auckland"))
    response = finance_client.get(URL)
    assert f'{local.day} {local:%b %Y} <span class="muted">{local:%H:%M}</span>' in response.text
    assert "Times are shown in Pacific/Auckland." in response.text


def test_it_marks_open_void_statuses_and_what_is_still_due(finance_client, sim):
    invoices = sim.account(ACCOUNT_ID).invoices
    invoices[-1].status = "open"
    invoices[-2].status = "void"
    response = finance_client.get(URL)
    assert '<span class="badge badge-warning">Open</span>' in response.text
    assert '<span class="badge badge-neutral">Void</span>' in response.text
    assert 'class="num due"' in response.text


def test_it_pages_the_invoices_in_the_dashboard(finance_client, sim):
    response = finance_client.get(URL, {"page": 2})
    assert response.status_code == 200
    assert row_ids(response.text) == [i.id for i in history(sim)[20:]]
    assert "Invoices 21–30 of 30, page 2 of 2" in response.text
    assert f'href="{URL}"' in response.text and 'rel="prev"' in response.text
    assert 'aria-current="page"><span class="visually-hidden">Page </span>2</a>' in response.text


def test_it_follows_cloudflares_pagination_once_and_caches_the_list(finance_client, sim):
    finance_client.get(URL)
    assert sim.calls["GET invoice-history"] == 2  # 30 invoices, 20 per upstream page
    finance_client.get(URL, {"page": 2})
    finance_client.get(URL, headers=TABLE)
    assert sim.calls["GET invoice-history"] == 2
    finance_client.get(URL, {"type": "manual"})
    assert sim.calls["GET invoice-history"] == 3


@pytest.mark.parametrize("type", ["auto", "manual"])
def test_it_filters_by_origin(finance_client, sim, type):
    response = finance_client.get(URL, {"type": type})
    assert response.status_code == 200
    wanted = history(sim, type)
    assert row_ids(response.text) == [i.id for i in wanted[:20]]
    assert f'<option value="{type}" selected>' in response.text


def test_it_keeps_the_filter_in_the_page_links(finance_client, sim):
    sim_account = sim.account(ACCOUNT_ID)
    for invoice in sim_account.invoices:
        invoice.origin = "manual"
    response = finance_client.get(URL, {"type": "manual"})
    assert f'href="{URL}?type=manual&amp;page=2"' in response.text
    assert f'hx-get="{URL}?type=manual&amp;page=2"' in response.text


def test_it_says_when_there_are_no_invoices(finance_client, sim):
    sim.account(ACCOUNT_ID).invoices.clear()
    response = finance_client.get(URL, {"type": "auto"})
    assert response.status_code == 200
    assert "No auto top-up invoices yet." in response.text
    assert 'class="pagination"' not in response.text


def test_it_says_plainly_when_cloudflare_ignores_the_page_parameter(
    finance_client, sim, monkeypatch
):
    handle = sim.handle

    def ignoring_page(method, path, query, *args, **kwargs):
        return handle(
            method, path, {k: v for k, v in query.items() if k != "page"}, *args, **kwargs
        )

    monkeypatch.setattr(sim, "handle", ignoring_page)
    response = finance_client.get(URL)
    assert response.status_code == 200
    assert "Cloudflare returned 20 of 30 invoices." in response.text
    assert sim.calls["GET invoice-history"] == 2
    assert row_ids(response.text) == [i.id for i in history(sim)[:20]]
    assert "Invoices 1–20 of 20" in response.text


def test_it_shows_another_currency_with_its_code_and_no_dollar_sign(
    finance_client, sim, monkeypatch
):
    monkeypatch.setattr(sim_state, "CURRENCY_INVOICE", "eur")
    response = finance_client.get(URL)
    table = table_section(response.text)
    upcoming = upcoming_section(response.text)
    first = history(sim)[0]
    assert f"{first.amount / 100:,.2f} EUR" in table
    assert ">EUR</td>" in table
    assert "$" not in table and "$" not in upcoming
    assert " EUR</dd>" in upcoming


def test_it_links_pdfs_only_on_allowed_hosts(finance_client, settings):
    settings.INVOICE_PDF_HOSTS = ["invoice.stripe.com"]
    response = finance_client.get(URL)
    table = table_section(response.text)
    assert 'href="https://pay.stripe.com' not in table
    assert "Not linked*" in table
    assert '<code class="withheld-url">https://pay.stripe.com/invoice/' in table
    assert "not an https address on invoice.stripe.com" in table


def test_it_offers_invoices_in_the_navigation_to_finance_only(finance_client, lead):
    assert f'<a href="{URL}" aria-current="page">Invoices</a>' in finance_client.get(URL).text
    overview = f"/accounts/{ACCOUNT_ID}/"
    assert f'<a href="{URL}">Invoices</a>' in finance_client.get(overview).text
    lead_client = Client()
    lead_client.force_login(lead)
    assert "Invoices</a>" not in lead_client.get(overview).text


def test_it_refuses_the_team_lead(lead_client, sim):
    assert lead_client.get(URL).status_code == 403
    assert lead_client.get(URL, headers=TABLE).status_code == 403
    assert sim.calls["GET invoice-history"] == 0


def test_it_switches_accounts_to_the_invoices_page(finance_client):
    response = finance_client.get(URL)
    assert f'href="/accounts/{OTHER_ACCOUNT_ID}/invoices/"' in response.text


def test_it_refuses_a_post(finance_client):
    assert finance_client.post(URL).status_code == 405


# ---------------------------------------------------------------- the upcoming invoice


def test_it_shows_the_upcoming_invoice_with_its_line_items(finance_client, sim):
    preview = sim.account(ACCOUNT_ID).invoice_preview(sim.now())
    response = finance_client.get(URL)
    section = upcoming_section(response.text)
    assert f"${preview['amount_due'] / 100:,.2f}" in section
    assert '<span class="badge badge-neutral">Draft</span>' in section
    assert "<dd>1–30 Jun 2026</dd>" in section
    for line in preview["invoice_lines"]:
        assert escape(line["description"]) in section
        assert f"${line['amount'] / 100:,.2f}" in section
        assert f"{line['quantity']:,}" in section
        assert f"Cloudflare: {line['pricing']['unit_amount_decimal']}" in section
    assert "Unit price is the line amount divided by the quantity." in section


def test_it_shows_credits_applied_to_a_line(finance_client, sim, monkeypatch):
    account = sim.account(ACCOUNT_ID)
    preview = account.invoice_preview(sim.now())
    preview["invoice_lines"][0]["pretax_credit_amounts"] = [
        {"amount": 150, "type": "credit_balance_transaction"},
        {"amount": 50, "type": "discount"},
    ]
    monkeypatch.setattr(account, "invoice_preview", lambda now: preview)
    section = upcoming_section(finance_client.get(URL).text)
    assert '<td data-label="Credits applied" class="num">$2.00</td>' in section
    assert "<dt>Credits applied</dt>" in section


def test_it_reads_a_404_from_the_preview_as_no_upcoming_invoice(finance_client, sim, monkeypatch):
    refusing(sim, monkeypatch, "invoice-preview", 404, 1005, "No upcoming invoice")
    response = finance_client.get(URL)
    assert response.status_code == 200
    section = upcoming_section(response.text)
    assert "No upcoming invoice." in section
    assert "notice-error" not in section


# ---------------------------------------------------------------- HTMX


def test_it_answers_the_table_alone_to_htmx(finance_client, sim):
    response = finance_client.get(URL, {"page": 2}, headers=TABLE)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="invoice-table"')
    assert "<html" not in response.text
    assert "upcoming-invoice" not in response.text
    assert row_ids(response.text) == [i.id for i in history(sim)[20:]]
    assert "HX-Request" in response["Vary"]
    assert sim.calls["GET invoice-preview"] == 0


def test_it_answers_the_table_alone_to_the_partial_query(finance_client):
    response = finance_client.get(URL, {"partial": "invoice-table", "type": "auto"})
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="invoice-table"')
    assert "<html" not in response.text
    # Links are to the page itself, never to the fragment.
    assert "partial=" not in response.text


@pytest.mark.parametrize(
    ("query", "headers"),
    [({}, UPCOMING), ({"partial": "upcoming-invoice"}, {})],
)
def test_it_answers_the_upcoming_invoice_alone(finance_client, sim, query, headers):
    response = finance_client.get(URL, query, headers=headers)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="upcoming-invoice"')
    assert "<html" not in response.text
    assert "invoice-table" not in response.text
    assert sim.calls["GET invoice-history"] == 0
    assert "HX-Request" in response["Vary"]


def test_it_ignores_the_filter_when_only_the_upcoming_invoice_is_asked_for(finance_client):
    response = finance_client.get(URL, {"partial": "upcoming-invoice", "page": "x"})
    assert response.status_code == 200


def test_it_answers_a_full_page_to_an_htmx_history_restore(finance_client):
    headers = TABLE | {"HX-History-Restore-Request": "true"}
    response = finance_client.get(URL, headers=headers)
    assert response.status_code == 200
    assert "<html" in response.text


def test_it_answers_a_full_page_with_both_partials_and_vary(finance_client):
    response = finance_client.get(URL)
    assert "<html" in response.text
    assert '<section id="upcoming-invoice"' in response.text
    assert '<div id="invoice-table"' in response.text
    assert "HX-Request" in response["Vary"]


def test_it_wires_the_controls_for_htmx_and_for_no_javascript(finance_client):
    html = finance_client.get(URL).text
    section = html[html.index('<section id="invoice-history"') :]
    opening = section[: section.index(">")]
    assert 'hx-target="#invoice-table"' in opening
    assert 'hx-push-url="true"' in opening
    assert 'hx-indicator="#invoice-history"' in opening
    form = re.search(r"<form [^>]*>", section)
    assert form is not None
    assert 'method="get"' in form.group(0) and f'action="{URL}"' in form.group(0)
    assert f'hx-get="{URL}"' in form.group(0)
    assert 'class="htmx-indicator loading" aria-hidden="true"' in section
    assert f'<a href="{URL}?page=2" hx-get="{URL}?page=2"' in section


def test_it_refuses_an_unknown_partial(finance_client):
    assert finance_client.get(URL, {"partial": "nope"}).status_code == 400
    headers = {"HX-Request": "true", "HX-Target": "balance-card"}
    assert finance_client.get(URL, headers=headers).status_code == 400


# ---------------------------------------------------------------- bad input

BAD_QUERIES = [
    ({"type": "bogus"}, "Choose all, auto or manual as the invoice type."),
    ({"type": "<script>"}, "Choose all, auto or manual as the invoice type."),
    ({"page": "0"}, "The page must be 1 or more."),
    ({"page": "-3"}, "The page must be 1 or more."),
    ({"page": "two"}, "The page must be a whole number."),
    ({"page": "1.5"}, "The page must be a whole number."),
    ({"page": "1e3"}, "The page must be a whole number."),
    ({"page": "3"}, "There is no page 3: these invoices fill 2 pages."),
    ({"page": "99999999999999999999"}, "There is no page 99999999999999999999"),
    ({"type": "manual", "page": "9"}, "There is no page 9: these invoices fill 1 page."),
]


@pytest.mark.parametrize(("query", "message"), BAD_QUERIES)
def test_it_explains_bad_input_on_a_full_page(finance_client, query, message):
    response = finance_client.get(URL, query)
    assert response.status_code == 400
    assert "<html" in response.text
    assert '<form class="invoice-filter"' in response.text
    assert escape(message) in table_section(response.text)
    assert '<section id="upcoming-invoice"' in response.text
    assert "<script>" not in response.text


@pytest.mark.parametrize(("query", "message"), BAD_QUERIES)
def test_it_answers_bad_input_on_a_fragment_with_400(finance_client, query, message):
    response = finance_client.get(URL, query, headers=TABLE)
    assert response.status_code == 400
    assert "<html" not in response.text
    assert escape(message) in response.text


def test_it_reads_no_history_for_an_invalid_type(finance_client, sim):
    finance_client.get(URL, {"type": "bogus"})
    assert sim.calls["GET invoice-history"] == 0


# ---------------------------------------------------------------- Cloudflare failing

FAULTS = [
    ("error", {"status": 500}, "Cloudflare's billing service is having trouble."),
    ("error", {"status": 503}, "Cloudflare's billing service is having trouble."),
    ("rate_limit", {"retry_after": 300}, "limiting how often we may ask"),
    ("hang", {"seconds": 0}, "took too long to answer"),
    ("malformed", {}, "sent an answer we could not read"),
    ("unsuccessful", {}, "answered with an error"),
]


@pytest.mark.parametrize(("fault", "params", "message"), FAULTS)
def test_it_says_inside_the_table_when_the_history_fails(
    finance_client, sim, fault, params, message
):
    sim.set_fault("GET invoice-history", fault, **params)
    response = finance_client.get(URL)
    assert response.status_code == 200
    table = table_section(response.text)
    assert escape(message) in table
    assert "<table" not in table
    assert "Traceback" not in response.text
    assert "notice-error" not in upcoming_section(response.text)
    assert "Total due" in upcoming_section(response.text)


@pytest.mark.parametrize(("fault", "params", "message"), FAULTS)
def test_it_says_inside_the_card_when_the_preview_fails(
    finance_client, sim, fault, params, message
):
    sim.set_fault("GET invoice-preview", fault, **params)
    response = finance_client.get(URL)
    assert response.status_code == 200
    section = upcoming_section(response.text)
    assert escape(message) in section
    assert "Total due" not in section
    assert len(row_ids(response.text)) == 20


@pytest.mark.parametrize(("fault", "params", "message"), FAULTS)
def test_it_answers_a_failing_fragment_with_200_and_the_notice(
    finance_client, sim, fault, params, message
):
    sim.set_fault("GET invoice-history", fault, **params)
    response = finance_client.get(URL, headers=TABLE)
    assert response.status_code == 200
    assert escape(message) in response.text


def test_it_keeps_what_it_has_when_a_later_page_fails(finance_client, sim, monkeypatch):
    # The first upstream page answers; the second fails.
    refusing(sim, monkeypatch, "invoice-history", 500, 1500, "Internal server error")
    response = finance_client.get(URL)
    assert response.status_code == 200
    assert "Cloudflare returned 20 of 30 invoices." in response.text
    assert "Asking for the rest failed" in response.text
    assert len(row_ids(response.text)) == 20


@pytest.mark.parametrize("endpoint", ["GET invoice-history", "GET invoice-preview"])
def test_it_shows_the_last_good_answer_as_of_its_time_when_cloudflare_fails(
    finance_client, sim, settings, endpoint
):
    settings.BILLING_CACHE_SECONDS = 0  # every request asks Cloudflare again
    first = finance_client.get(URL)
    sim.set_fault(endpoint, "error", status=502)
    response = finance_client.get(URL)
    assert response.status_code == 200
    section = (
        table_section(response.text)
        if endpoint == "GET invoice-history"
        else upcoming_section(response.text)
    )
    assert re.search(r"As of <time [^>]*>\d\d:\d\d</time>, Cloudflare is not answering", section)
    assert escape("Cloudflare's billing service is having trouble.") in section
    assert row_ids(response.text) == row_ids(first.text)
    assert "Total due" in upcoming_section(response.text)


@pytest.mark.parametrize("endpoint", ["GET invoice-history", "GET invoice-preview"])
def test_it_escapes_hostile_strings_and_links_from_cloudflare(finance_client, sim, endpoint):
    sim.set_fault(endpoint, "hostile")
    response = finance_client.get(URL)
    assert response.status_code == 200
    assert_nothing_hostile(response.text)
    assert any(escape(hostile) in response.text for hostile in HOSTILE_HTML)
    if endpoint == "GET invoice-history":
        assert f'<code class="withheld-url">{HOSTILE_URL}</code>' in response.text
        assert "Not linked*" in response.text


def test_it_escapes_hostile_strings_in_the_fragment(finance_client, sim):
    sim.set_fault("GET invoice-history", "hostile")
    response = finance_client.get(URL, headers=TABLE)
    assert_nothing_hostile(response.text)


def test_it_marks_a_slow_section_as_loading_and_lets_it_load_itself(finance_client, sim, settings):
    # The history's first call cannot answer before the release below, so the page goes
    # without it; the deadline is ample for the upcoming invoice, which is not held.
    settings.BILLING_PAGE_DEADLINE = 1.0
    hold(sim, "GET invoice-history", times=1)
    response = finance_client.get(URL)
    assert response.status_code == 200
    table = table_section(response.text)
    assert "Still waiting for Cloudflare." in table
    assert f'hx-get="{URL}" hx-trigger="load delay:1s"' in table
    assert "Total due" in upcoming_section(response.text)
    # The read still out goes on in the background and fills the cache when let through...
    assert sim.wait_for_in_flight({"GET invoice-history": 1}, SAFETY_TIMEOUT)
    sim.release()
    wait_for_background_reads()
    # ...so what the placeholder then asks for is that read's answer, not a second read.
    later = finance_client.get(URL, headers=TABLE)
    assert len(row_ids(later.text)) == 20
    assert sim.calls["GET invoice-history"] == 2  # the history's two pages, read once
