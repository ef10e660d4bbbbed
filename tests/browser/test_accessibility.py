"""Accessibility: axe-core finds no serious or critical violation on the main pages.

axe-core (MPL-2.0) is vendored in tests/browser/vendor/, not under static/: it is a test tool
that the driver puts into the page, never a file the app serves (and no CDN is involved).
It goes in with ``page.evaluate`` (the DevTools protocol, not subject to the page's CSP):
``page.add_script_tag`` inserts an inline <script>, which our ``script-src 'self'`` blocks,
and the blocked script would show up as a CSP violation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page

from tests.browser.conftest import HTMX_IDLE, in_other_looks, login
from tests.conftest import OVERVIEW_URL

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

AXE = Path(__file__).resolve().parent / "vendor" / "axe-4.14.1.min.js"
#: The impacts that fail a test; "minor" and "moderate" ones are not reported.
FAILING_IMPACTS = {"serious", "critical"}

RUN_AXE = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
  }));
}"""

#: The main pages an admin (who sees everything) can open, by name.
PAGES = {
    "overview": OVERVIEW_URL,
    "usage": f"{OVERVIEW_URL}usage/",
    "invoices": f"{OVERVIEW_URL}invoices/",
    "topups": f"{OVERVIEW_URL}topups/",
    "auto-topup": f"{OVERVIEW_URL}auto-top-up/",
    "spending-limit": f"{OVERVIEW_URL}spending-limit/",
    "activity": f"{OVERVIEW_URL}activity/",
    "alerts": f"{OVERVIEW_URL}alerts/",
    "all-accounts": "/accounts/",
}


def axe_violations(page: Page) -> list[str]:
    """Runs axe-core on the loaded page; returns its serious and critical violations."""
    page.wait_for_load_state("load")
    page.wait_for_function(HTMX_IDLE)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['targets'])}"
        for v in found
        if v["impact"] in FAILING_IMPACTS
    ]


def assert_accessible(page: Page, where: str) -> None:
    violations = axe_violations(page)
    assert not violations, f"axe on {where}:\n" + "\n".join(violations)


def test_login_page(page: Page, live_server) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    assert_accessible(page, "login")


def test_main_pages(page: Page, live_server, admin: User) -> None:
    # One browser and one login for all the pages (a Chromium per page would double the
    # time); every page is checked, then the violations of all of them are reported.
    login(page, live_server, admin, OVERVIEW_URL)
    report: list[str] = []
    for name, url in PAGES.items():
        page.goto(f"{live_server.url}{url}")
        report += [f"{name}: {violation}" for violation in axe_violations(page)]
    assert not report, "axe found serious or critical violations:\n" + "\n".join(report)


def test_overview_dark_and_narrow(page: Page, live_server, admin: User, browser: Browser) -> None:
    login(page, live_server, admin, OVERVIEW_URL)
    for scheme, width, other in in_other_looks(browser, page, f"{live_server.url}{OVERVIEW_URL}"):
        assert_accessible(other, f"overview, {scheme}, {width}px")
