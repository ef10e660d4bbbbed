"""Browser tests: Playwright drives Debian's Chromium against pytest-django's live server.

The live server runs in a thread of this process, so the autouse ``_dashboard_simulator``
fixture of tests/conftest.py serves it too: a test can change the simulator (advance its
clock) while the page is open. Each test fails on any console error, uncaught page error
or Content-Security-Policy violation. Screenshots go to var/screenshots/ (not committed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright

from billing_api.simulator import Simulator
from dashboard.infra import clock
from tests.conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
WIDTH, HEIGHT = 1280, 900
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
#: How long an expectation waits (ms): a safety bound for a loaded machine, not a speed claim.
TIMEOUT_MS = 10_000

# Injected by the driver before any page script: not subject to the page's CSP. A violation
# becomes a console error, which the ``page`` fixture records like any other.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + event.blockedURI);
});
"""


#: The personas of tests/conftest.py: made before the browser starts (see ``browser``).
PERSONAS = ("lead", "finance", "admin", "nobody", "outsider")


@contextmanager
def allow_async_unsafe() -> Iterator[None]:
    """Turns Django's async-safety check off, then puts the variable back as it was."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser(request: pytest.FixtureRequest, live_server) -> Iterator[Browser]:
    """Chromium, started for one test and stopped at its end.

    Playwright's sync API keeps an asyncio event loop running in the main thread from start
    to stop. While it runs, Django's ORM in the main thread is not the ORM of the rest of the
    test: its async-safety check refuses every call (SynchronousOnlyOperation), and its
    connections (context-local, asgiref) are other objects, so pytest-django's flush and
    serialized rollback, run outside the loop, would miss them; asyncio.run() fails too.
    Hence the loop lives inside one test only, after the database is set up and the test's
    personas are made, and before the flush; the check is off exactly while the loop runs
    (the variable must not leak into other tests: `check --deploy` refuses it), and any
    connection the test opened meanwhile is closed before the loop stops.
    """
    for name in (*PERSONAS, "persona"):
        if name in request.fixturenames:
            request.getfixturevalue(name)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with allow_async_unsafe(), sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()


#: Who may follow each flow: the roles whose permissions the flow needs (tests/conftest.py).
READERS = ("lead", "finance", "admin")
PAYERS = ("finance", "admin")


@pytest.fixture
def persona(request: pytest.FixtureRequest) -> User:
    """The persona named by the test's parameter: ``@pytest.mark.parametrize("persona",
    PAYERS, indirect=True)`` runs a flow once per role that may follow it."""
    user: User = request.getfixturevalue(request.param)
    return user


@pytest.fixture(autouse=True, scope="module")
def _roles_back_after(django_db_setup, django_db_blocker) -> Iterator[None]:
    # As in test_topup_concurrency.py: each test here flushes every table after itself, and
    # serialized_rollback puts the migrations' data (the roles) back only before the next
    # transactional test. Tests that get the database later (by request.getfixturevalue,
    # which pytest-django orders last) need the roles back after the last one.
    yield
    with django_db_blocker.unblock():
        contents: str = getattr(connection, "_test_serialized_contents")  # noqa: B009
        connection.creation.deserialize_db_from_string(contents)


@pytest.fixture(autouse=True)
def _dashboard_clock(monkeypatch, sim: Simulator) -> None:
    """The dashboard's "now" is the simulator's (frozen) clock, so the history lines up."""
    monkeypatch.setattr(clock, "now", lambda: datetime.fromtimestamp(sim.now(), UTC))


HTMX_IDLE = """() => !document.querySelector(".htmx-request, .htmx-swapping, .htmx-settling")"""


class PageErrors:
    """What went wrong in the browser during one test."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        #: Addresses a test opens knowing they answer with an error status (a 403 page): Chromium
        #: reports such a document as a failed load, which is then not an error of the test.
        self.refused: set[str] = set()

    def console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if url in self.refused and message.text.startswith("Failed to load resource: the server"):
            return
        self.messages.append(f"console: {message.text} ({url})")

    def page_error(self, error: Exception) -> None:
        self.messages.append(f"page error: {error}")


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@contextmanager
def open_page(browser: Browser, errors: PageErrors, **options: Any) -> Iterator[Page]:
    """A page in a fresh browser context (``options`` as for ``new_context``), closed after."""
    options.setdefault("viewport", {"width": WIDTH, "height": HEIGHT})
    # The usage chart then draws at once instead of animating: screenshots show it whole.
    options.setdefault("reduced_motion", "reduce")
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.on("console", errors.console)
    page.on("pageerror", errors.page_error)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, page_errors: PageErrors) -> Iterator[Page]:
    """A fresh browser context and page; the test fails on any console or page error."""
    with open_page(browser, page_errors) as page:
        yield page
    assert not page_errors.messages, "errors in the browser:\n" + "\n".join(page_errors.messages)


#: The other looks a page must survive: dark at the default width, light on a phone.
OTHER_LOOKS = (("dark", WIDTH), ("light", 390))


def in_other_looks(browser: Browser, page: Page, url: str) -> Iterator[tuple[str, int, Page]]:
    """``url`` opened in each of OTHER_LOOKS, logged in as on ``page``.

    Yields (scheme, width, page); after each, fails on any console or page error there.
    """
    state = page.context.storage_state()
    for scheme, width in OTHER_LOOKS:
        errors = PageErrors()
        with open_page(
            browser,
            errors,
            storage_state=state,
            color_scheme=scheme,
            viewport={"width": width, "height": HEIGHT},
        ) as other:
            other.goto(url)
            yield scheme, width, other
        assert not errors.messages, f"{scheme} {width}px:\n" + "\n".join(errors.messages)


def confirm_topup(page: Page, amount: str) -> Locator:
    """On the top-ups page: enter ``amount`` dollars, continue, return the Charge button."""
    form = page.locator("#topup-form")
    form.get_by_label("Amount (US dollars)").fill(amount)
    form.get_by_role("button", name="Continue").click()
    charge = form.get_by_role("button", name=re.compile(r"^Charge \$"))
    expect(charge).to_be_visible()
    return charge


def login(page: Page, live_server, user: User, next_url: str = "/") -> None:
    """Logs ``user`` in through the login form, then waits for ``next_url`` to load."""
    page.goto(f"{live_server.url}/accounts/login/?next={next_url}")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"^" + re.escape(f"{live_server.url}{next_url}") + r"(\?|$)"))


def screenshot(page: Page, name: str, scheme: str = "light") -> Path:
    """Saves a full-page screenshot as var/screenshots/<name>-<scheme>-<width>.png."""
    width = page.viewport_size["width"] if page.viewport_size else WIDTH
    path = SCREENSHOTS / f"{name}-{scheme}-{width}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Once htmx is done (a swapped part fades back in from its loading state).
    page.wait_for_function(HTMX_IDLE)
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path
