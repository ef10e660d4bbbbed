"""The main flows in a real browser: overview, usage, invoices, a top-up, the team lead's view.

Each flow runs once per role that may follow it (READERS, PAYERS); the screenshots are taken
as finance staff, the README's persona. Each test waits on elements and URLs (Playwright's
expectations), never on sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect

from billing_api.simulator import Simulator
from tests.browser.conftest import (
    PAYERS,
    READERS,
    PageErrors,
    confirm_topup,
    in_other_looks,
    login,
    screenshot,
)
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL

# The live server needs a transactional database; the roles (groups) come from migrations,
# so they are put back after each test's flush.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

USAGE_URL = f"{OVERVIEW_URL}usage/"
INVOICES_URL = f"{OVERVIEW_URL}invoices/"
TOPUPS_URL = f"{OVERVIEW_URL}topups/"
MONEY = re.compile(r"-?\$[\d,]+\.\d\d")

# Marks the document so that a later check can tell it was not reloaded.
MARK_DOCUMENT = "() => { window.__notReloaded = true; }"
NOT_RELOADED = "() => window.__notReloaded === true"


def read_overview(page: Page) -> None:
    balance = page.locator("#balance-card .balance")
    expect(balance).to_have_text(MONEY)
    expect(page.locator("#runway-card .forecast")).not_to_be_empty()
    expect(page.locator("#balance-card .facts")).to_contain_text("Auto top-up")
    expect(page.locator("#balance-card .facts dd").nth(1)).to_contain_text(
        re.compile(r"When the balance falls below \$[\d,]+\.\d\d, add \$[\d,]+\.\d\d\.")
    )


def shot_name(page_name: str, persona: User) -> str:
    """Screenshots as finance keep the page's name (the README's); others add the role."""
    name = persona.get_username()
    return page_name if name == "finance" else f"{page_name}-{name}"


@pytest.mark.parametrize("persona", READERS, indirect=True)
def test_reading_the_overview(page, live_server, persona: User, browser: Browser):
    login(page, live_server, persona, OVERVIEW_URL)
    read_overview(page)
    expect(page.locator("#runway-card")).to_contain_text(re.compile(r"Last 7 days"))
    screenshot(page, shot_name("overview", persona))

    # The same page dark, and on a phone-sized screen; both must be free of errors too.
    for scheme, _, other in in_other_looks(browser, page, f"{live_server.url}{OVERVIEW_URL}"):
        read_overview(other)
        screenshot(other, shot_name("overview", persona), scheme)


# Counts the painted (not transparent) pixels of the usage chart's canvas.
CHART_PAINTED = """() => {
  const canvas = document.getElementById("usage-chart");
  if (!canvas || !canvas.width || !canvas.height || !window.Chart) return false;
  if (window.Chart.getChart(canvas) === undefined) return false;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
  return painted > 1000;
}"""


def expect_a_chart(page: Page) -> None:
    """The chart canvas has a size, and Chart.js has drawn on it."""
    canvas = page.locator("#usage-chart")
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    page.wait_for_function(CHART_PAINTED)


@pytest.mark.parametrize("persona", READERS, indirect=True)
def test_usage_switches_buckets_and_range(page, live_server, persona: User):
    login(page, live_server, persona, USAGE_URL)
    expect_a_chart(page)
    page.evaluate(MARK_DOCUMENT)

    page.locator(".segmented a", has_text="Hour").click()
    page.wait_for_url(re.compile(r"[?&]window=hour"))
    expect(page.locator(".segmented a", has_text="Hour")).to_have_attribute("aria-current", "true")
    expect(page.locator("#usage-heading")).to_have_text("Spend per hour")
    expect_a_chart(page)

    page.locator(".segmented a", has_text="24 h").click()
    page.wait_for_url(re.compile(r"[?&]range=24h"))
    expect(page.locator(".segmented a", has_text="24 h")).to_have_attribute("aria-current", "true")
    assert "window=hour" in page.url
    expect_a_chart(page)
    page.wait_for_function(NOT_RELOADED)
    # The export is for those who may take data away (finance, billing admins).
    export = page.get_by_role("link", name="Download CSV")
    expect(export).to_have_count(1 if persona.has_perm("dashboard.export_data") else 0)
    screenshot(page, shot_name("usage", persona))


def swaps_the_table(page: Page, action: Callable[[], None], url: str) -> None:
    """Runs ``action`` and waits until the URL matches ``url`` and a new table is in."""
    page.evaluate('() => { document.getElementById("invoice-table").__old = true; }')
    action()
    page.wait_for_url(re.compile(url))
    page.wait_for_function('() => !document.getElementById("invoice-table").__old')


@pytest.mark.parametrize("persona", PAYERS, indirect=True)
def test_invoices_pages_and_filter_swap_only_the_table(page, live_server, persona: User):
    login(page, live_server, persona, INVOICES_URL)
    table = page.locator("#invoice-table")
    expect(table.locator(".invoice-list")).to_be_visible()
    # Marks the document and a part that must stay, to tell a swap from a reload.
    page.evaluate(MARK_DOCUMENT)
    page.evaluate('() => { document.getElementById("upcoming-invoice").__kept = true; }')

    # The seeded simulator has 30 invoices: two pages of 20.
    next_link = table.get_by_role("link", name="Next")
    expect(next_link).to_be_visible()
    swaps_the_table(page, next_link.click, r"[?&]page=2")
    expect(table.locator(".pagination [aria-current=page]")).to_contain_text("2")

    swaps_the_table(
        page, lambda: page.get_by_label("Show").select_option("manual"), r"[?&]type=manual"
    )
    assert "page=2" not in page.url
    expect(table.locator(".invoice-list, .empty").first).to_be_visible()
    origins = table.locator("td.origin").all_text_contents()
    assert origins and all("manual" in origin.lower() for origin in origins), origins

    page.wait_for_function(NOT_RELOADED)
    assert page.evaluate('() => document.getElementById("upcoming-invoice").__kept === true')
    screenshot(page, shot_name("invoices", persona))


@pytest.mark.parametrize("persona", PAYERS, indirect=True)
def test_a_top_up_goes_through_to_completed(page, live_server, persona: User, sim):
    login(page, live_server, persona, TOPUPS_URL)
    balance = page.locator("#balance-summary .balance")
    expect(balance).to_have_text(MONEY)
    before = balance.inner_text()
    page.evaluate(MARK_DOCUMENT)

    charge = confirm_topup(page, "25")
    expect(charge).to_have_text("Charge $25.00")
    screenshot(page, shot_name("topup-confirm", persona))
    charge.click()
    status = page.locator("#topup-status")
    expect(status).to_contain_text("Cloudflare is processing the payment of $25.00")

    # The simulator's clock stands still in tests: the payment settles when it moves on,
    # and the page (polling every 2 s) shows it without a reload.
    sim.advance_clock(6)
    expect(status).to_contain_text("Done: $25.00 was added to the balance.")
    expect(balance).not_to_have_text(before)
    expect(balance).to_have_text(MONEY)
    expect(page.locator("#topup-history")).to_contain_text("Completed")
    page.wait_for_function(NOT_RELOADED)
    assert sim.calls["POST topup"] == 1
    screenshot(page, shot_name("topup", persona))


def test_the_team_lead_sees_no_write_controls(page, live_server, lead, page_errors: PageErrors):
    login(page, live_server, lead, OVERVIEW_URL)
    read_overview(page)
    nav = page.locator("nav.page-nav")
    expect(nav.get_by_role("link", name="Overview")).to_be_visible()
    expect(nav.get_by_role("link", name="Auto top-up")).to_have_count(0)
    expect(nav.get_by_role("link", name="Spending limit")).to_have_count(0)
    expect(nav.get_by_role("link", name="Top-ups")).to_have_count(0)
    expect(page.locator("#balance-card .card-link")).to_have_count(0)
    expect(page.locator("form[action$='/topups/new/']")).to_have_count(0)
    expect(page.locator("main form")).to_have_count(0)
    screenshot(page, "lead-overview")

    # Nor behind the pages it cannot open: typing their address gives the "not allowed" page.
    expect_not_allowed(
        page, live_server, page_errors, "topups/", "auto-top-up/", "spending-limit/", "invoices/"
    )


def expect_not_allowed(page: Page, live_server, errors: PageErrors, *paths: str) -> None:
    """Each page below the account, typed in, answers 403 with a page that has no form."""
    for path in paths:
        url = f"{live_server.url}{OVERVIEW_URL}{path}"
        errors.refused.add(url)
        response = page.goto(url)
        assert response is not None and response.status == 403, path
        expect(page.locator("h1")).to_have_text("Not allowed")
        expect(page.locator("main form")).to_have_count(0)


def test_finance_sees_no_controls_for_the_rules(page, live_server, finance, page_errors):
    login(page, live_server, finance, OVERVIEW_URL)
    nav = page.locator("nav.page-nav")
    expect(nav.get_by_role("link", name="Top-ups")).to_be_visible()
    expect(nav.get_by_role("link", name="Auto top-up")).to_have_count(0)
    expect(nav.get_by_role("link", name="Spending limit")).to_have_count(0)
    expect_not_allowed(page, live_server, page_errors, "auto-top-up/", "spending-limit/")


# A minimal PDF: what the invoice host answers in place of Stripe (the machine is offline,
# and a test must not reach the internet anyway).
PDF_BODY = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


@pytest.mark.parametrize("persona", PAYERS, indirect=True)
def test_an_invoice_pdf_link_opens_its_target(page, live_server, persona: User, sim: Simulator):
    requested: list[str] = []

    def stripe(route) -> None:
        requested.append(route.request.url)
        route.fulfill(status=200, content_type="application/pdf", body=PDF_BODY)

    page.context.route(re.compile(r"^https://pay\.stripe\.com/"), stripe)
    login(page, live_server, persona, INVOICES_URL)
    newest = max(sim.account(ACCOUNT_ID).invoices, key=lambda i: (i.created, i.id))
    target = newest.as_json()["invoice_pdf"]
    link = page.locator("#invoice-table td.pdf a").first
    expect(link).to_have_attribute("href", target)
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")

    with page.context.expect_page() as popup_info:
        link.click()
    popup = popup_info.value
    popup.wait_for_load_state()
    assert popup.url == target
    assert requested == [target]
    # noopener: the invoice host's page cannot reach back into the dashboard's tab.
    assert popup.evaluate("() => window.opener") is None
    popup.close()
