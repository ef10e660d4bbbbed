"""Hardening, proved from outside: what a crawler, a hostile upstream and a curious user see.

* A crawler logs in as each role through the login form and follows every same-site link and
  htmx ``hx-get`` it finds from the overview, under production security settings over https,
  checking every answer's security headers and cookies, and that nothing answers 500.
* With the simulator's hostile fault on every endpoint, every page, partial and CSV renders
  the payloads inert.
* ``next=`` never leads off the site; sessions end at logout, when idle, and when old.
* A user granted one account reaches nothing of another by changing the URL, and nothing is
  asked of Cloudflare for it.
"""

from __future__ import annotations

import csv
import io
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from billing_api.simulator import HOSTILE_HTML, HOSTILE_URL, Simulator
from dashboard import roles
from dashboard.services import overview as overview_service
from dashboard.web import login as dashboard_login
from tests.conftest import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    OVERVIEW_URL,
    PASSWORD,
    SIMULATOR_NOW,
    make_user,
)
from tests.topup_flow import confirm_data

pytestmark = pytest.mark.django_db

ORIGIN = "https://testserver"
#: A bound on one crawl, far above what a role reaches (the test says if it is hit).
MAX_PAGES = 300
#: Fewest URLs each role's crawl must reach: a crawl that finds nothing proves nothing.
AT_LEAST = {"lead": 10, "finance": 20, "admin": 25}


@pytest.fixture
def production(settings) -> None:
    """Security settings as outside debug mode (the tests run with the demo's defaults)."""
    settings.DEBUG = False
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True


# ---------------------------------------------------------------- the crawler


class LinkParser(HTMLParser):
    """Every link (``a href``) and htmx GET (``hx-get``) in a page, and every attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, bool]] = []
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            self.attributes.append((tag, name, value))
            if tag == "a" and name == "href":
                self.links.append((value, False))
            elif name == "hx-get":
                self.links.append((value, True))


def same_site(base: str, link: str) -> str | None:
    """``link`` as a path and query on this site, or None (elsewhere, static, a fragment)."""
    absolute = urljoin(base, link)
    parts = urlsplit(absolute)
    if (parts.scheme, parts.netloc) != ("https", "testserver"):
        return None
    if parts.path.startswith("/static/"):
        return None
    return urlunsplit(("", "", parts.path, parts.query, ""))


@dataclass
class Crawl:
    """What one crawl saw: each URL's answer, and the problems found."""

    responses: dict[tuple[str, bool], Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    cookies_seen: set[str] = field(default_factory=set)

    @property
    def urls(self) -> set[str]:
        return {url for url, _ in self.responses}


def crawl(
    client: Client,
    start: str,
    check: Callable[[str, Any, Crawl], None],
    limit: int | None = None,
) -> Crawl:
    """Breadth first from ``start`` over same-site links and hx-get URLs.

    Without ``limit`` the crawl must end by itself within MAX_PAGES (it fails otherwise);
    with one it stops there (for Django's admin, whose filters combine without end).
    """
    seen = Crawl()
    queue: deque[tuple[str, bool]] = deque([(start, False)])
    queued = {(start, False)}
    while queue:
        if limit is not None and len(seen.responses) >= limit:
            break
        assert len(seen.responses) < MAX_PAGES, f"the crawl passed {MAX_PAGES} pages"
        url, htmx = queue.popleft()
        headers = {"HX-Request": "true"} if htmx else {}
        response = client.get(url, secure=True, headers=headers)
        seen.responses[(url, htmx)] = response
        check(url, response, seen)
        found: list[tuple[str, bool]] = []
        if response.status_code in (301, 302, 303, 307, 308):
            found.append((response["Location"], False))
        elif response["Content-Type"].startswith("text/html"):
            parser = LinkParser()
            parser.feed(response.content.decode())
            found.extend(parser.links)
        for link, is_htmx in found:
            target = same_site(ORIGIN + url, link)
            # Logging out would end the crawl; it is a POST form anyway, never a link.
            if target is None or target.startswith((reverse("logout"), "/admin/logout/")):
                continue
            if (target, is_htmx) not in queued:
                queued.add((target, is_htmx))
                queue.append((target, is_htmx))
    return seen


def check_security(url: str, response: Any, seen: Crawl) -> None:
    """The headers and cookies every answer carries under production settings."""
    problems = seen.problems
    where = f"{response.status_code} {url}"
    if response.status_code >= 500:
        problems.append(f"{where}: server error")
    policy = response.get("Content-Security-Policy", "")
    if "default-src 'none'" not in policy or "script-src 'self'" not in policy:
        problems.append(f"{where}: Content-Security-Policy missing or loose: {policy!r}")
    if "unsafe-inline" in policy or "unsafe-eval" in policy:
        problems.append(f"{where}: Content-Security-Policy allows unsafe code: {policy!r}")
    expected = {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Strict-Transport-Security": "max-age=3600",
    }
    for header, value in expected.items():
        if response.get(header) != value:
            problems.append(f"{where}: {header} is {response.get(header)!r}, not {value!r}")
    # No proxy or browser cache keeps a page, fragment or export behind the login.
    directives = {part.strip() for part in response.get("Cache-Control", "").split(",")}
    if not {"private", "no-store"} <= directives:
        problems.append(f"{where}: Cache-Control is {response.get('Cache-Control')!r}")
    for name, morsel in response.cookies.items():
        if name not in ("sessionid", "csrftoken"):
            continue
        seen.cookies_seen.add(name)
        if not morsel["secure"]:
            problems.append(f"{where}: cookie {name} without Secure")
        if not morsel["httponly"]:
            problems.append(f"{where}: cookie {name} without HttpOnly")
        if morsel["samesite"] != "Lax":
            problems.append(f"{where}: cookie {name} SameSite is {morsel['samesite']!r}")


def log_in(client: Client, user: User) -> None:
    """Through the login form over https, as a person would, checking those answers too."""
    seen = Crawl()
    check_security("/accounts/login/", client.get("/accounts/login/", secure=True), seen)
    response = client.post(
        "/accounts/login/", {"username": user.get_username(), "password": PASSWORD}, secure=True
    )
    check_security("/accounts/login/ (POST)", response, seen)
    assert response.status_code == 302, "logged in"
    assert not seen.problems, "\n".join(seen.problems)
    assert seen.cookies_seen == {"sessionid", "csrftoken"}


@pytest.mark.parametrize("role", ["lead", "finance", "admin"])
def test_every_page_a_role_reaches_carries_the_security_headers(request, production, role, capsys):
    user = request.getfixturevalue(role)
    client = Client()
    log_in(client, user)
    seen = crawl(client, OVERVIEW_URL, check_security)
    assert not seen.problems, "\n".join(seen.problems)
    # Every card of the overview and every page of the role's navigation was reached.
    assert len(seen.urls) >= AT_LEAST[role], sorted(seen.urls)
    assert any("partial=" in url for url in seen.urls), "the crawl followed hx-get"
    for name in ("overview", "usage", "activity", "invoices", "topups", "auto_topup"):
        url = reverse(f"dashboard:{name}", args=[ACCOUNT_ID])
        if user.has_perm(
            f"dashboard.{'view_' + name if name != 'auto_topup' else 'change_auto_topup'}"
        ):
            assert url in seen.urls, f"{role} never reached {url}"
    with capsys.disabled():
        print(f"\n  crawl as {role}: {len(seen.responses)} answers, {len(seen.urls)} URLs")


def test_every_page_of_user_management_carries_the_security_headers(production, admin, capsys):
    client = Client()
    log_in(client, admin)
    seen = crawl(client, "/admin/", check_security, limit=60)
    assert not seen.problems, "\n".join(seen.problems)
    assert "/admin/auth/user/" in seen.urls
    with capsys.disabled():
        print(f"\n  crawl of Django's admin as admin: {len(seen.urls)} URLs")


def test_plain_http_is_sent_to_https(production, lead):
    client = Client()
    client.force_login(lead)
    response = client.get(OVERVIEW_URL)
    assert response.status_code == 301
    assert response["Location"] == f"https://testserver{OVERVIEW_URL}"


# ---------------------------------------------------------------- hostile upstream


def make_everything_hostile(sim: Simulator) -> None:
    """Every endpoint's free text as HTML/JS, and a failed auto top-up so its words show."""
    config = sim.account(ACCOUNT_ID).topup_config
    config.error = "Your card was declined."
    config.disabled_reason = "card_declined"
    config.last_failed_at_ms = int((SIMULATOR_NOW - 3 * 3600) * 1000)
    sim.set_fault("*", "hostile")


def assert_inert(url: str, html: str) -> None:
    """No payload as markup, and no javascript: address in any attribute."""
    for payload in HOSTILE_HTML:
        assert payload not in html, f"{url}: {payload} unescaped"
    assert "onerror=alert" not in html.replace("onerror=alert(1)&gt;", ""), url
    parser = LinkParser()
    parser.feed(html)
    for tag, name, value in parser.attributes:
        assert not value.strip().lower().startswith("javascript:"), f"{url}: <{tag} {name}>"
        assert not name.startswith("on"), f"{url}: <{tag} {name}=...> event handler attribute"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def assert_csv_inert(url: str, text: str) -> int:
    """No cell a spreadsheet would run as a formula; returns how many cells were read."""
    cells = 0
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            cells += 1
            if cell.startswith(FORMULA_START):
                assert PLAIN_NUMBER.fullmatch(cell), f"{url}: formula cell {cell!r}"
    return cells


def test_hostile_strings_from_every_endpoint_render_inert_everywhere(production, admin, sim):
    make_everything_hostile(sim)
    client = Client()
    client.force_login(admin)
    create = reverse("dashboard:topup_create", args=[ACCOUNT_ID])
    # The confirmation (not reachable by a link) names the card, whose brand is hostile.
    confirm = client.post(create, {"amount": "25", "idempotency_key": "a" * 32}, secure=True)
    assert confirm.status_code == 200
    assert_inert(f"POST {create}", confirm.text)
    assert any(escape(payload) in confirm.text for payload in HOSTILE_HTML)
    # A top-up, so the history, its status poll and the activity log have rows.
    data = confirm_data(client, create, "25", key="b" * 32, secure=True)
    assert client.post(create, data, secure=True).status_code == 302

    csv_cells = 0
    escaped_on: set[str] = set()

    def check(url: str, response: Any, seen: Crawl) -> None:
        nonlocal csv_cells
        assert response.status_code < 500, f"{response.status_code} {url}"
        kind = response["Content-Type"]
        if kind.startswith("text/csv"):
            assert response["Content-Disposition"].startswith("attachment;"), url
            csv_cells += assert_csv_inert(url, response.content.decode())
            # Data for a spreadsheet: the words may be in it, but never sniffed as a page.
            assert response["X-Content-Type-Options"] == "nosniff", url
        elif kind.startswith("text/html"):
            assert_inert(url, response.text)
            if any(escape(payload) in response.text for payload in HOSTILE_HTML):
                escaped_on.add(url)

    seen = crawl(client, OVERVIEW_URL, check)
    # The payloads did reach the pages that show upstream text (escaped there).
    assert any(url.startswith(OVERVIEW_URL + "?partial=") for url in escaped_on), escaped_on
    for name in ("invoices", "topups"):
        assert any(
            url.startswith(reverse(f"dashboard:{name}", args=[ACCOUNT_ID])) for url in escaped_on
        ), (
            name,
            sorted(escaped_on),
        )
    assert any(url.endswith(".csv") or ".csv?" in url for url in seen.urls), "a CSV was read"
    assert csv_cells > 0
    # And the hostile invoice links were never made links.
    invoices = client.get(reverse("dashboard:invoices", args=[ACCOUNT_ID]), secure=True).text
    assert f'href="{HOSTILE_URL}"' not in invoices


def test_a_hostile_upstream_string_is_not_a_formula_in_the_activity_csv(admin, sim):
    """Upstream words that reach the audit log leave the CSV as text, never as a formula."""
    from dashboard.services import audit

    audit.record(
        admin,
        ACCOUNT_ID,
        audit.Action.AUTO_TOPUP_SET,
        audit.Outcome.FAILED,
        detail='=HYPERLINK("https://evil.example/","card declined")',
        before={"error": "@SUM(1+1)"},
        after={"error": "+cmd|' /C calc'!A0"},
    )
    client = Client()
    client.force_login(admin)
    response = client.get(reverse("dashboard:activity_csv", args=[ACCOUNT_ID]))
    assert response.status_code == 200
    assert assert_csv_inert("activity.csv", response.content.decode()) > 0
    assert "'=HYPERLINK" in response.content.decode()


# ---------------------------------------------------------------- open redirects

EVIL_NEXT = [
    "https://evil.example/",
    "http://evil.example/",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "https:evil.example",
    "https://testserver@evil.example/",
    "https://evil.example/accounts/",
    " //evil.example",
    "/\t/evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
]


@pytest.mark.parametrize("next_url", EVIL_NEXT)
def test_login_refuses_to_send_anyone_off_the_site(lead, next_url):
    client = Client()
    page = client.get("/accounts/login/", {"next": next_url})
    assert "evil.example" not in page.text and "alert(1)" not in page.text
    response = client.post(
        "/accounts/login/", {"username": "lena", "password": PASSWORD, "next": next_url}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize("next_url", EVIL_NEXT[:6])
def test_a_logged_in_visit_to_the_login_page_goes_home_not_away(lead_client, next_url):
    response = lead_client.get("/accounts/login/", {"next": next_url})
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize("next_url", EVIL_NEXT[:6])
def test_logout_refuses_to_send_anyone_off_the_site(lead_client, next_url):
    response = lead_client.post("/accounts/logout/", {"next": next_url})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"


def test_login_follows_a_local_next(lead):
    local = reverse("dashboard:usage", args=[ACCOUNT_ID]) + "?range=7d"
    response = Client().post(
        "/accounts/login/", {"username": "lena", "password": PASSWORD, "next": local}
    )
    assert response["Location"] == local


# ---------------------------------------------------------------- sessions


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock(1_800_000_000.0)
    monkeypatch.setattr(dashboard_login, "now", moved)
    return moved


def logged_in_client(user: User) -> Client:
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": user.get_username(), "password": PASSWORD}
    )
    assert response.status_code == 302
    return client


def test_logging_out_ends_the_session_for_good(lead):
    client = logged_in_client(lead)
    assert client.get(OVERVIEW_URL).status_code == 200
    stolen = client.cookies["sessionid"].value
    client.post("/accounts/logout/")
    replay = Client()
    replay.cookies["sessionid"] = stolen
    response = replay.get(OVERVIEW_URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_an_idle_session_ends(clock, lead, settings):
    client = logged_in_client(lead)
    assert client.get(OVERVIEW_URL).status_code == 200
    clock.at += settings.SESSION_IDLE_SECONDS - 1
    assert client.get(OVERVIEW_URL).status_code == 200
    clock.at += settings.SESSION_IDLE_SECONDS - 1  # active a moment ago: still in
    assert client.get(OVERVIEW_URL).status_code == 200
    clock.at += settings.SESSION_IDLE_SECONDS + 1
    response = client.get(OVERVIEW_URL)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={OVERVIEW_URL}"
    # Over for good: a later request is not let back in.
    clock.at += 1
    assert client.get(OVERVIEW_URL).status_code == 302


def test_a_busy_session_still_ends_after_its_age(clock, lead, settings):
    assert settings.SESSION_COOKIE_AGE == 8 * 60 * 60
    client = logged_in_client(lead)
    assert client.get(OVERVIEW_URL).status_code == 200
    step = settings.SESSION_IDLE_SECONDS // 2
    for _ in range(settings.SESSION_COOKIE_AGE // step):
        clock.at += step
        assert client.get(OVERVIEW_URL).status_code == 200
    clock.at += step
    assert client.get(OVERVIEW_URL).status_code == 302


def test_idle_expiry_can_be_turned_off(clock, lead, settings):
    settings.SESSION_IDLE_SECONDS = 0
    client = logged_in_client(lead)
    assert client.get(OVERVIEW_URL).status_code == 200
    clock.at += settings.SESSION_COOKIE_AGE - 60
    assert client.get(OVERVIEW_URL).status_code == 200


def test_a_session_is_written_at_most_once_a_minute(clock, lead):
    client = logged_in_client(lead)
    client.get(OVERVIEW_URL)
    clock.at += 30
    assert "sessionid" not in client.get(OVERVIEW_URL).cookies
    clock.at += 31
    assert "sessionid" in client.get(OVERVIEW_URL).cookies


def test_the_session_cookie_lasts_the_session_age(lead, settings):
    client = Client()
    client.post("/accounts/login/", {"username": "lena", "password": PASSWORD})
    assert client.cookies["sessionid"]["max-age"] == settings.SESSION_COOKIE_AGE
    assert dashboard_login.STARTED_AT != dashboard_login.SEEN_AT


def test_htmx_gets_its_csrf_token_from_the_page_not_the_cookie(lead_client, settings):
    """The CSRF cookie is HttpOnly: so the page must carry the token for htmx."""
    assert settings.CSRF_COOKIE_HTTPONLY is True
    page = lead_client.get(OVERVIEW_URL).text
    token = re.search(r"<body hx-headers='\{&quot;X-CSRFToken&quot;: &quot;(\w+)&quot;", page)
    token = token or re.search(r"""<body hx-headers='\{"X-CSRFToken": "(\w+)"\}'>""", page)
    assert token, "the token is in the body's hx-headers"
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = lead_client.cookies
    url = reverse("dashboard:spending_limit_delete", args=[ACCOUNT_ID])
    # Without the token a POST is refused; the page's token is accepted (403 only for the
    # role, which has no permission: the CSRF check passed).
    refused = strict.post(url)
    assert refused.status_code == 403
    assert "CSRF verification failed" in refused.text
    allowed = strict.post(url, headers={"X-CSRFToken": token.group(1)})
    assert allowed.status_code == 403
    assert "CSRF verification failed" not in allowed.text
    assert "Your role does not include" in allowed.text


# ---------------------------------------------------------------- other accounts


@pytest.fixture
def other_admin(db) -> User:
    """Otto is a billing admin (every permission) granted the other account only."""
    return make_user("otto", roles.BILLING_ADMIN, accounts=[OTHER_ACCOUNT_ID])


def account_urls(account_id: str) -> list[str]:
    """Every URL of an account's pages, partials included."""
    names = [
        "overview",
        "usage",
        "usage_csv",
        "invoices",
        "topups",
        "topup_create",
        "topup_check",
        "activity",
        "activity_csv",
        "auto_topup",
        "auto_topup_delete",
        "spending_limit",
        "spending_limit_delete",
    ]
    urls = [reverse(f"dashboard:{name}", args=[account_id]) for name in names]
    urls.append(reverse("dashboard:topup_status", args=[account_id, 1]))
    overview = reverse("dashboard:overview", args=[account_id])
    urls += [f"{overview}?partial={card}" for card in overview_service.CARD_READS]
    urls.append(reverse("dashboard:invoices", args=[account_id]) + "?partial=upcoming-invoice")
    return urls


NOWHERE = "f" * 32  # an account id that is not configured at all


def assert_as_if_absent(client: Client, urls: list[str]) -> int:
    """Each URL answers, to every method and as a partial, as for an account that does not
    exist: 404 (or 405/403 decided before the account is looked at); returns how many."""
    asked = 0
    for url in urls:
        for method in ("get", "post"):
            for headers in ({}, {"HX-Request": "true"}):
                response = getattr(client, method)(url, headers=headers)
                absent = getattr(client, method)(url.replace(ACCOUNT_ID, NOWHERE), headers=headers)
                where = f"{method.upper()} {url} {headers}"
                assert response.status_code == absent.status_code, where
                assert response.status_code in (403, 404, 405), where
                assert ACCOUNT_ID not in response.text, where
                asked += 1
    return asked


def test_an_admin_of_one_account_reaches_nothing_of_another(other_admin, sim):
    """Every permission, the wrong account: as if it did not exist, and nothing upstream.

    The URL walk (test_access.py) shows 404 for finance staff's GETs of the pages; here the
    role allows everything, so only the account grant stands between the user and the data,
    and partials, POSTs and a real top-up's status are asked for too.
    """
    from dashboard.models import Topup

    client = Client()
    client.force_login(other_admin)
    # A real top-up of the first account, so that its status URL exists for someone.
    topup = Topup.objects.create(
        account_id=ACCOUNT_ID, idempotency_key="c" * 32, amount=25, username="ada"
    )
    urls = account_urls(ACCOUNT_ID) + [
        reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk])
    ]
    assert assert_as_if_absent(client, urls) == 4 * len(urls)
    answers = [client.get(url).status_code for url in urls]
    assert answers.count(404) >= len(urls) - 3, answers  # all but the POST-only views
    assert sum(sim.calls.values()) == 0, f"asked Cloudflare: {dict(sim.calls)}"
    topup.refresh_from_db()
    assert topup.status == Topup.Status.CREATING  # nothing was done to it
    # The same user's own account answers, so the 404s are the grant, not a broken page.
    assert client.get(reverse("dashboard:overview", args=[OTHER_ACCOUNT_ID])).status_code == 200


def test_an_account_whose_access_was_taken_away_is_hidden_at_once(finance_client, sim):
    from dashboard.models import AccountAccess

    assert finance_client.get(OVERVIEW_URL).status_code == 200
    AccountAccess.objects.filter(account_id=ACCOUNT_ID).delete()
    sim.reset_calls()
    assert_as_if_absent(finance_client, account_urls(ACCOUNT_ID))
    assert sum(sim.calls.values()) == 0


def test_the_all_accounts_page_shows_only_granted_accounts_figures(other_admin, sim):
    client = Client()
    client.force_login(other_admin)
    page = client.get(reverse("dashboard:all_accounts")).text
    assert ACCOUNT_ID not in page
    assert f"/accounts/{OTHER_ACCOUNT_ID}/" in page
