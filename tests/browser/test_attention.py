"""What needs attention and the upcoming invoice explained, in a real browser, light, dark
and narrow: the list is seen before the cards, and the page has no console or CSP error."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import in_other_looks, login, screenshot
from tests.conftest import OTHER_ACCOUNT_ID

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

RESEARCH_URL = f"/accounts/{OTHER_ACCOUNT_ID}/"  # seeded with no card and no auto top-up


def read_attention(page: Page) -> None:
    listed = page.locator("#attention-list")
    expect(listed).to_be_visible()
    expect(listed.locator("li").first).to_contain_text("No card is on file")
    expect(listed.get_by_role("link", name="Add a card in Cloudflare’s dashboard")).to_be_visible()
    expect(page.locator("#invoice-card")).to_contain_text("drawn from your prepaid credit")


def test_the_overview_opens_with_what_needs_attention(
    page: Page, live_server, finance: User, browser: Browser
):
    login(page, live_server, finance, RESEARCH_URL)
    read_attention(page)
    # Above the cards: the first thing read after the title.
    list_top = page.locator("#attention-list").bounding_box()
    cards_top = page.locator("#balance-card").bounding_box()
    assert list_top is not None and cards_top is not None and list_top["y"] < cards_top["y"]
    screenshot(page, "attention")
    for scheme, _, other in in_other_looks(browser, page, f"{live_server.url}{RESEARCH_URL}"):
        read_attention(other)
        screenshot(other, "attention", scheme)


def test_all_accounts_opens_with_what_needs_attention(page: Page, live_server, finance: User):
    login(page, live_server, finance, "/accounts/")
    listed = page.locator("#attention-list")
    expect(listed.get_by_role("link", name="Research")).to_be_visible()
    expect(listed).to_contain_text("No card is on file")
    screenshot(page, "all-accounts-attention")
