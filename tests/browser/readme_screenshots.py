"""``make screenshots``: the README's screenshots, taken from the current code as a user sees it.

Runs what ``make run`` runs (demo mode: a fresh SQLite file, the built-in simulator, the demo
users) on a free port of 127.0.0.1, logs in as finance staff in headless Chromium and saves
the main pages to static/screenshots/, then the Alerts page as a billing admin (after a round
of the alerts worker) and the weekly digest email as finance would get it. Unlike the browser
tests it does not pin the clock:
the pages show today's dates, as a new user's would. Fails, saving nothing, on any console
error or Content-Security-Policy violation.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django.setup()

from django.conf import settings  # noqa: E402
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright  # noqa: E402

from dashboard.demo import DEMO_USERS  # noqa: E402
from tests.browser.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    HTMX_IDLE,
    REPORT_CSP_VIOLATIONS,
    TIMEOUT_MS,
    PageErrors,
    confirm_topup,
)
from tests.browser.test_flows import CHART_PAINTED  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "static" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 860}
#: Variables that would take the server out of demo mode or onto another database.
NOT_PASSED = ("CLOUDFLARE_", "BILLING_API_BASE_URL", "DATABASE_URL", "REDIS_URL", "DEBUG")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Renders the weekly digest's HTML for the demo user named in argv[1] (run with the
#: server's environment, so on its database).
DIGEST_HTML = """
import sys, django
django.setup()
from django.contrib.auth.models import User
from dashboard.infra import clock
from dashboard.services import digest
user = User.objects.get(username=sys.argv[1])
message = digest.message(digest.build(user, clock.now()), "to@example.com")
sys.stdout.write(message.alternatives[0][0])
"""


@contextmanager
def demo_server() -> Iterator[tuple[str, dict[str, str]]]:
    """``make run``'s server on a fresh SQLite file, after one round of the alerts worker;
    yields its URL and environment, stops it after."""
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_PASSED)}
        env["DATABASE_URL"] = f"sqlite:///{tmp}/db.sqlite3"
        env["EMAIL_URL"] = "console://"
        manage = [sys.executable, str(ROOT / "manage.py")]
        for command in (["migrate", "--noinput"], ["demo_users"], ["alerts_worker", "--once"]):
            subprocess.run([*manage, *command], env=env, check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        server = subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the demo server did not start") from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}", env
        finally:
            server.terminate()
            server.wait(timeout=10)


def shoot(page: Page, folder: Path, name: str) -> Path:
    page.wait_for_function(HTMX_IDLE)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled")
    return path


def past_invoices_in_view(page: Page) -> None:
    """The past invoices (with their PDF links) at the top, below the upcoming one's lines."""
    expect(page.locator(".invoice-list")).to_be_visible()
    page.locator("#invoice-history").evaluate(
        "(card) => window.scrollTo(0, card.getBoundingClientRect().top + window.scrollY - 24)"
    )


#: The pages after the overview: (name, path below the account, what shows it is ready).
STEPS: list[tuple[str, str, Callable[[Page], object]]] = [
    ("usage", "usage/", lambda page: page.wait_for_function(CHART_PAINTED)),
    ("invoices", "invoices/", lambda page: past_invoices_in_view(page)),
    ("topup-confirm", "topups/", lambda page: confirm_topup(page, "25")),
]


def log_in(page: Page, url: str, username: str) -> None:
    user = next(user for user in DEMO_USERS if user.username == username)
    page.goto(f"{url}/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/accounts/*/")


def alerts_and_digest(
    browser: Browser, url: str, env: dict[str, str], errors: PageErrors, shots: Path
) -> list[Path]:
    """The Alerts page as a billing admin (of the demo account with alerts that fired), and
    the digest email's HTML as finance would get it."""
    context = browser.new_context(viewport={"width": 1280, "height": 1100}, reduced_motion="reduce")
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.on("console", errors.console)
    page.on("pageerror", errors.page_error)
    log_in(page, url, "admin")
    research = list(settings.BILLING_ACCOUNTS)[1]
    page.goto(f"{url}/accounts/{research}/alerts/")
    expect(page.locator("#alert-history .badge-ok").first).to_be_visible()
    taken = [shoot(page, shots, "alerts")]
    html = subprocess.run(
        [sys.executable, "-c", DIGEST_HTML, "finance"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    digest_file = shots / "digest.html"
    digest_file.write_text(html, encoding="utf-8")
    mail = browser.new_page(viewport={"width": 720, "height": 900})
    mail.goto(digest_file.as_uri())
    path = shots / "digest.png"
    mail.screenshot(path=str(path), full_page=True)
    digest_file.unlink()
    context.close()
    return [*taken, path]


def main() -> None:
    finance = next(user for user in DEMO_USERS if user.username == "finance")
    errors = PageErrors()
    taken: list[Path] = []
    shots = Path(tempfile.mkdtemp(prefix="readme-shots-"))
    with demo_server() as (url, env), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for scheme in ("light", "dark"):
                context = browser.new_context(
                    viewport=VIEWPORT,
                    color_scheme=scheme,
                    reduced_motion="reduce",
                )
                context.set_default_timeout(TIMEOUT_MS)
                context.add_init_script(REPORT_CSP_VIOLATIONS)
                page = context.new_page()
                page.on("console", errors.console)
                page.on("pageerror", errors.page_error)
                page.goto(f"{url}/accounts/login/")
                page.get_by_label("Username").fill(finance.username)
                page.get_by_label("Password").fill(finance.password)
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{url}/accounts/*/")
                overview = page.url
                expect(page.locator("#balance-card .balance")).to_be_visible()
                suffix = "" if scheme == "light" else "-dark"
                taken.append(shoot(page, shots, f"overview{suffix}"))
                if scheme == "dark":
                    context.close()
                    break
                for name, below, ready in STEPS:
                    page.goto(overview + below)
                    ready(page)
                    taken.append(shoot(page, shots, name))
                context.close()
            taken += alerts_and_digest(browser, url, env, errors, shots)
        finally:
            browser.close()
    if errors.messages:
        shutil.rmtree(shots)
        sys.exit("errors in the browser, no screenshot kept:\n" + "\n".join(errors.messages))
    OUT.mkdir(parents=True, exist_ok=True)
    for shot in taken:
        kept = OUT / shot.name
        shutil.move(shot, kept)
        print(f"saved {kept.relative_to(ROOT)}")
    shutil.rmtree(shots)


if __name__ == "__main__":
    main()
