"""A reload while Cloudflare processes a top-up keeps its live status, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import HTMX_IDLE, confirm_topup, login, screenshot
from tests.conftest import OVERVIEW_URL

# The live server needs a transactional database; the roles (groups) come from migrations,
# so they are put back after each test's flush.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

TOPUPS_URL = f"{OVERVIEW_URL}topups/"
ACTIVITY_URL = f"{OVERVIEW_URL}activity/"


def test_it_keeps_the_live_status_after_a_reload_mid_processing(page, live_server, admin, sim):
    login(page, live_server, admin, TOPUPS_URL)
    balance = page.locator("#balance-summary .balance").inner_text()
    confirm_topup(page, "25").click()
    status = page.locator("#topup-status")
    expect(status).to_contain_text("Cloudflare is processing the payment of $25.00")

    page.reload()
    expect(status).to_contain_text("Cloudflare is processing the payment of $25.00")
    expect(page.locator("#topup-history")).to_contain_text("Pending")
    screenshot(page, "topup-reloaded-pending")
    sim.advance_clock(6)
    expect(status).to_contain_text("Done: $25.00 was added to the balance.")
    page.wait_for_function(HTMX_IDLE)
    expect(page.locator("#topup-history")).to_contain_text("Completed")
    expect(page.locator("#balance-summary .balance")).not_to_have_text(balance)
    screenshot(page, "topup-reloaded-done")

    page.goto(f"{live_server.url}{ACTIVITY_URL}")
    expect(page.locator("main")).to_contain_text("dashboard follow-up")
    expect(page.locator("main")).to_contain_text("Cloudflare completed the payment")
    screenshot(page, "topup-settled-activity")
    assert sim.calls["POST topup"] == 1
