"""The main flows in a real browser: overview, usage, invoices, a top-up, the team lead's view.

Each test waits on elements and URLs (Playwright's expectations), never on sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import confirm_topup, in_other_looks, login, screenshot
from tests.conftest import OVERVIEW_URL

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


def test_finance_reads_the_overview(page, live_server, finance, browser: Browser):
    login(page, live_server, finance, OVERVIEW_URL)
    read_overview(page)
    expect(page.locator("#runway-card")).to_contain_text(re.compile(r"Last 7 days"))
    screenshot(page, "overview")

    # The same page dark, and on a phone-sized screen; both must be free of errors too.
    for scheme, _, other in in_other_looks(browser, page, f"{live_server.url}{OVERVIEW_URL}"):
        read_overview(other)
        screenshot(other, "overview", scheme)


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


def test_usage_switches_buckets_and_range(page, live_server, finance):
    login(page, live_server, finance, USAGE_URL)
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
    screenshot(page, "usage")


def swaps_the_table(page: Page, action: Callable[[], None], url: str) -> None:
    """Runs ``action`` and waits until the URL matches ``url`` and a new table is in."""
    page.evaluate('() => { document.getElementById("invoice-table").__old = true; }')
    action()
    page.wait_for_url(re.compile(url))
    page.wait_for_function('() => !document.getElementById("invoice-table").__old')


def test_invoices_pages_and_filter_swap_only_the_table(page, live_server, finance):
    login(page, live_server, finance, INVOICES_URL)
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
    screenshot(page, "invoices")


def test_a_top_up_goes_through_to_completed(page, live_server, finance, sim):
    login(page, live_server, finance, TOPUPS_URL)
    balance = page.locator("#balance-summary .balance")
    expect(balance).to_have_text(MONEY)
    before = balance.inner_text()
    page.evaluate(MARK_DOCUMENT)

    charge = confirm_topup(page, "25")
    expect(charge).to_have_text("Charge $25.00")
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
    screenshot(page, "topup")


def test_the_team_lead_sees_no_write_controls(page, live_server, lead):
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
