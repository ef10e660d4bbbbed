"""Hostile text from Cloudflare in a real browser: shown as text, never run.

The simulator's hostile fault puts ``<script>alert(1)</script>``, ``<img src=x onerror=...>``
and ``javascript:`` links into every free-text field of every endpoint. A billing admin (who
sees every page) opens each main page, a top-up confirmation naming the (hostile) card, and
an overview whose card arrives late, through htmx. The test fails on any dialog (an alert
that ran), any element the payloads would have injected, and, through the ``page`` fixture,
any console error or Content-Security-Policy violation.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from playwright.sync_api import Dialog, Page, expect

from billing_api.simulator import Simulator
from tests.browser.conftest import HTMX_IDLE, confirm_topup, login
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, SIMULATOR_NOW, hold

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PAGES = {
    "overview": OVERVIEW_URL,
    "usage": f"{OVERVIEW_URL}usage/",
    "invoices": f"{OVERVIEW_URL}invoices/",
    "topups": f"{OVERVIEW_URL}topups/",
    "auto-topup": f"{OVERVIEW_URL}auto-top-up/",
    "spending-limit": f"{OVERVIEW_URL}spending-limit/",
    "activity": f"{OVERVIEW_URL}activity/",
    "all-accounts": "/accounts/",
}
#: Pages that show Cloudflare's free text, where the escaped payload must be seen as text.
SHOWS_UPSTREAM_TEXT = ("overview", "invoices", "topups", "auto-topup")
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

# What the payloads would leave in the document had they been parsed as markup: scripts not
# ours, event-handler attributes, javascript: addresses, the <img src=x>.
INJECTED = """() => {
  const found = [];
  for (const script of document.scripts) {
    if (script.type === "application/json") continue;  // json_script: data, never run
    if (!script.src.startsWith(location.origin + "/static/")) {
      found.push("script: " + (script.src || script.textContent.slice(0, 80)));
    }
  }
  for (const element of document.querySelectorAll("*")) {
    for (const attribute of element.attributes) {
      if (attribute.name.startsWith("on")) {
        found.push(element.tagName + " " + attribute.name + "=" + attribute.value);
      }
      if (/^\\s*javascript:/i.test(attribute.value)) {
        found.push(element.tagName + " " + attribute.name + "=" + attribute.value);
      }
    }
  }
  for (const image of document.images) {
    if (image.getAttribute("src") === "x") found.push("img src=x");
  }
  return found;
}"""


class Dialogs:
    """Every dialog a page opened (an alert that ran), dismissed so the page goes on."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("dialog", self._seen)

    def _seen(self, dialog: Dialog) -> None:
        self.messages.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


def make_everything_hostile(sim: Simulator) -> None:
    """Hostile text on every endpoint, and a failed auto top-up so its words are shown."""
    config = sim.account(ACCOUNT_ID).topup_config
    config.error = "Your card was declined."
    config.disabled_reason = "card_declined"
    config.last_failed_at_ms = int((SIMULATOR_NOW - 3 * 3600) * 1000)
    sim.set_fault("*", "hostile")


def assert_inert(page: Page, name: str, dialogs: Dialogs) -> str:
    """Once htmx is done: no dialog, nothing injected; returns the document as it stands."""
    page.wait_for_load_state("load")
    page.wait_for_function(HTMX_IDLE)
    injected: list[str] = page.evaluate(INJECTED)
    assert not injected, f"{name}: injected into the page: {injected}"
    assert not dialogs.messages, f"{name}: a dialog opened: {dialogs.messages}"
    return page.content()


def test_hostile_text_on_every_page_stays_text(page, live_server, admin: User, sim: Simulator):
    make_everything_hostile(sim)
    dialogs = Dialogs(page)
    login(page, live_server, admin, OVERVIEW_URL)

    # A top-up: its confirmation names the card (hostile brand), then the history lists it.
    page.goto(f"{live_server.url}{PAGES['topups']}")
    charge = confirm_topup(page, "25")
    assert ESCAPED in assert_inert(page, "top-up confirmation", dialogs)
    charge.click()
    expect(page.locator("#topup-status")).to_be_visible()

    shown_as_text = []
    for name, url in PAGES.items():
        page.goto(f"{live_server.url}{url}")
        if ESCAPED in assert_inert(page, name, dialogs):
            shown_as_text.append(name)
    # The payloads did reach the pages that show Cloudflare's words, as visible text.
    assert set(SHOWS_UPSTREAM_TEXT) <= set(shown_as_text), shown_as_text
    page.goto(f"{live_server.url}{PAGES['invoices']}")
    expect(page.get_by_text("<script>alert(1)</script>").first).to_be_visible()
    assert_inert(page, "invoices, again", dialogs)


def test_a_hostile_card_swapped_in_by_htmx_stays_text(
    page, live_server, admin: User, sim: Simulator, settings
):
    """The overview sends late cards as placeholders that htmx fills: the same payloads."""
    make_everything_hostile(sim)
    dialogs = Dialogs(page)
    login(page, live_server, admin, "/accounts/")
    cache.clear()  # the page just seen read every balance
    settings.BILLING_PAGE_DEADLINE = 0.2
    hold(sim, "GET credit-balance", times=1)
    page.goto(f"{live_server.url}{OVERVIEW_URL}")
    banner = page.locator("#topup-banner")
    expect(page.locator(".card-loading").first).to_be_visible()
    sim.release()
    # The banner, filled by htmx, carries Cloudflare's (hostile) reason for the failure.
    expect(banner).to_contain_text("<script>alert(1)</script>")
    expect(page.locator(".card-loading")).to_have_count(0)
    assert ESCAPED in assert_inert(page, "overview, cards swapped in", dialogs)
