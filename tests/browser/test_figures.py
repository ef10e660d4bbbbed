"""The shared figures as a reader sees them: the same burn and month to date, with their
spans, on the overview and on All accounts."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tests.browser.conftest import login, screenshot
from tests.conftest import OVERVIEW_URL

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_it_shows_the_overviews_figures_on_all_accounts(page: Page, live_server, finance: User):
    login(page, live_server, finance, OVERVIEW_URL)
    burn = page.locator('[data-figure="burn-7d"]')
    month = page.locator('#spend-card [data-figure="mtd"]')
    expect(burn).to_be_visible()
    shown_burn, shown_month = burn.inner_text(), month.inner_text()
    expect(page.locator('[data-figure-span="burn-7d"]')).to_contain_text(
        "per day over 3–9 Jun, complete days, UTC"
    )
    page.goto(f"{live_server.url}/accounts/")
    production = page.get_by_role("row").filter(has_text="Production")
    expect(production.locator('[data-figure="burn-7d"]')).to_have_text(f"{shown_burn}/day")
    expect(production.locator('[data-figure="mtd"]')).to_have_text(shown_month)
    expect(page.get_by_text("per day over 3–9 Jun, complete days, UTC")).to_be_visible()
    screenshot(page, "all-accounts")
