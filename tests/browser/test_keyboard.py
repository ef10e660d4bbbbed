"""Keyboard, small screens, a readable Activity table and the back button, in a real browser.

Each test waits on elements and URLs (Playwright's expectations), never on sleeps.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, ViewportSize, expect

from billing_api import errors
from dashboard.services import audit
from tests.browser.conftest import HTMX_IDLE, confirm_topup, login, screenshot
from tests.browser.test_accessibility import PAGES
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

TOPUPS_URL = f"{OVERVIEW_URL}topups/"
ACTIVITY_URL = f"{OVERVIEW_URL}activity/"
PHONE = ViewportSize(width=390, height=844)

FOCUSED = """() => {
  const el = document.activeElement;
  return el ? (el.textContent || "").trim() : "";
}"""

FIRST_FOCUSABLE = """() => {
  const all = document.querySelectorAll("a[href], button, input, select, textarea, summary");
  const first = [...all].find((el) => el.tabIndex >= 0 && el.type !== "hidden");
  return first ? first.textContent.trim() : "";
}"""


def test_focus_moves_to_the_charge_question_after_continue(page: Page, live_server, finance):
    login(page, live_server, finance, TOPUPS_URL)
    form = page.locator("#topup-form")
    form.get_by_label("Amount (US dollars)").fill("30")
    form.get_by_label("Amount (US dollars)").press("Enter")
    question = form.locator(".confirm-question")
    expect(question).to_contain_text(re.compile(r"^Charge \$30\.00 to "))
    page.wait_for_function(HTMX_IDLE)
    inside = page.evaluate(
        """() => !!document.activeElement && !!document.activeElement.closest(".topup-confirm")"""
    )
    assert inside, f"focus is on {page.evaluate(FOCUSED)!r}, not on the question"
    # The person can answer at once: Enter on the focused button charges.
    assert page.evaluate(FOCUSED) == "Charge $30.00"
    screenshot(page, "topup-confirm-focus")


def test_a_skip_link_comes_first_on_every_page(page: Page, live_server, admin):
    page.goto(f"{live_server.url}/accounts/login/")
    # The username field has focus at first (autofocus): the skip link still comes first.
    assert page.evaluate(FIRST_FOCUSABLE) == "Skip to content", "login page"
    login(page, live_server, admin, OVERVIEW_URL)
    for name, url in PAGES.items():
        page.goto(f"{live_server.url}{url}")
        page.keyboard.press("Tab")
        assert page.evaluate(FOCUSED) == "Skip to content", name
        expect(page.get_by_role("link", name="Skip to content")).to_be_visible()
        page.keyboard.press("Enter")
        # Focus is now in the main content: the next Tab does not land in the navigation.
        assert page.evaluate("() => document.activeElement.id") == "content", name
        page.keyboard.press("Tab")
        in_nav = page.evaluate("() => !!document.activeElement.closest('header, nav.page-nav')")
        assert not in_nav, name


def test_the_current_tab_is_in_view_on_a_phone(page: Page, live_server, admin):
    page.set_viewport_size(PHONE)
    login(page, live_server, admin, OVERVIEW_URL)
    for name in ("activity", "alerts", "spending-limit", "overview"):
        page.goto(f"{live_server.url}{PAGES[name]}")
        current = page.locator('.page-nav a[aria-current="page"]')
        expect(current).to_be_visible()
        page.wait_for_function(
            """() => { const r = document.querySelector('.page-nav a[aria-current="page"]')
                .getBoundingClientRect(); return r.left >= 0 && r.right <= window.innerWidth; }"""
        )
        box = current.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], name
        if name == "activity":
            screenshot(page, "nav-current-tab")


def test_the_activity_table_fits_a_laptop_screen(page: Page, live_server, admin: User, sim):
    error = errors.PermissionDeniedError(
        "POST spending-limit answered HTTP 403",
        status_code=403,
        errors=(errors.CloudflareErrorDetail(10000, "Authentication error"),) * 2,
        request_id="8f3c2a9e1b7d4c6f-LHR-0123456789abcdef",
    )
    audit.record(
        admin,
        ACCOUNT_ID,
        audit.Action.SPENDING_LIMIT_SET,
        audit.Outcome.REFUSED,
        before={"amount": Decimal("500.00"), "duration": "weekly", "strategy": "sliding"},
        after={"amount": Decimal("750.00"), "duration": "monthly", "strategy": "fixed"},
        error=error,
    )
    audit.record(
        admin,
        ACCOUNT_ID,
        audit.Action.TOPUP,
        audit.Outcome.ACCEPTED,
        after={
            "amount": Decimal("1000.00"),
            "payment_intent_id": "in_1QxYzAbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "status": "pending",
        },
        idempotency_key="5f0e6c1d2b3a49788d7c6b5a4f3e2d1c",
    )
    audit.record(
        admin,
        ACCOUNT_ID,
        audit.Action.ALERT_RULE_SET,
        audit.Outcome.ACCEPTED,
        after={
            "condition": "Credit balance below $100.00",
            "emails": ["finance-team@example.com", "billing-alerts@example.com"],
            "webhooks": ["https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXX"],
        },
    )
    login(page, live_server, admin, ACTIVITY_URL)
    expect(page.locator(".activity-list tbody tr")).to_have_count(3)
    widths = page.evaluate(
        """() => { const s = document.querySelector('.activity .table-scroll');
           return [s.scrollWidth, s.clientWidth, document.documentElement.scrollWidth,
                   window.innerWidth]; }"""
    )
    scroll_width, client_width, page_width, window_width = widths
    assert scroll_width <= client_width, f"the table scrolls: {scroll_width} > {client_width}"
    assert page_width <= window_width
    screenshot(page, "activity-fits")


def balance_on_the_overview(page: Page, live_server, user: User) -> str:
    """Logs in on the overview and returns the balance it shows."""
    login(page, live_server, user, OVERVIEW_URL)
    balance = page.locator("#balance-card .balance")
    expect(balance).to_have_text(re.compile(r"\$"))
    return balance.inner_text()


def top_up(page: Page, sim, amount: str) -> None:
    """On the top-ups page: charges ``amount`` dollars and waits for it to complete."""
    confirm_topup(page, amount).click()
    status = page.locator("#topup-status")
    expect(status).to_contain_text(f"Cloudflare is processing the payment of ${amount}.00")
    sim.advance_clock(6)
    expect(status).to_contain_text(f"Done: ${amount}.00 was added to the balance.")


def test_back_after_a_top_up_shows_the_new_balance(page: Page, live_server, finance, sim):
    before = balance_on_the_overview(page, live_server, finance)
    page.get_by_role("link", name="Top-ups").click()
    page.wait_for_url(re.compile(re.escape(TOPUPS_URL) + "$"))
    top_up(page, sim, "500")
    assert page.locator("#balance-summary .balance").inner_text() != before
    page.go_back()
    page.wait_for_url(re.compile(re.escape(OVERVIEW_URL) + "$"))
    expect(page.locator("#balance-card .balance")).not_to_have_text(before)
    screenshot(page, "back-after-topup")


def test_a_page_from_the_back_forward_cache_is_loaded_again(page: Page, live_server, finance, sim):
    before = balance_on_the_overview(page, live_server, finance)
    # A top-up made meanwhile in another tab, then this page shown again as the browser
    # shows a page from its back/forward cache (which Chromium may or may not use here).
    other = page.context.new_page()
    other.goto(f"{live_server.url}{TOPUPS_URL}")
    top_up(other, sim, "500")
    other.close()
    page.evaluate(
        """() => window.dispatchEvent(new PageTransitionEvent("pageshow", {persisted: true}))"""
    )
    expect(page.locator("#balance-card .balance")).not_to_have_text(before)
