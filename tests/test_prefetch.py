"""A request's first cache reads in one round trip (dashboard/prefetch.py).

What is counted: the commands sent to the real Redis while a page is served, and the SQL
queries; and what each page answers when what was prefetched changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from dashboard import authcache, pagecache, prefetch
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, PASSWORD

USAGE_URL = f"/accounts/{ACCOUNT_ID}/usage/"


@pytest.fixture(autouse=True)
def _production_like(settings, redis_cache) -> None:
    settings.AUTH_CACHE_SECONDS = 60
    settings.PAGE_CACHE_SECONDS = 5
    settings.BILLING_CACHE_SECONDS = 30


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of every command this process sends to Redis from now on."""
    sent: list[str] = []
    real = redis.Redis.execute_command

    def counting(self: redis.Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return real(self, *args, **options)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    yield sent


def logged_in(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_a_kept_overview_costs_one_round_trip_and_no_query(lead, commands):
    client = logged_in(lead)
    assert client.get(OVERVIEW_URL).status_code == 200  # rendered, and kept
    commands.clear()
    with CaptureQueriesContext(connection) as queries:
        again = client.get(OVERVIEW_URL)
    assert again.status_code == 200 and again["X-Page-Cache"] == "hit"
    # The session, the users' generation, the kept page and its account's generation.
    assert commands == ["MGET"], commands
    assert len(queries) == 0, [q["sql"] for q in queries]


def test_any_page_reads_its_session_and_user_in_one_round_trip(lead, commands):
    client = logged_in(lead)
    assert client.get(USAGE_URL).status_code == 200  # the user read once, remembered
    commands.clear()
    with CaptureQueriesContext(connection) as queries:
        assert client.get(USAGE_URL).status_code == 200
    # The first command is the prefetch; the rest are the page's own reads (usage figures).
    assert commands[0] == "MGET" and "GET" not in commands[:1]
    assert not [q for q in queries if "auth_" in q["sql"] or "session" in q["sql"]]


def test_a_logout_elsewhere_ends_the_session_at_once(lead):
    one = logged_in(lead)
    two = Client()
    two.cookies = one.cookies  # the same session in a second tab
    assert two.get(OVERVIEW_URL).status_code == 200
    assert one.post("/accounts/logout/").status_code == 302
    assert two.get(OVERVIEW_URL).status_code == 302


def test_a_page_of_a_session_the_cache_lost_is_read_from_the_database(lead):
    client = logged_in(lead)
    assert client.get(OVERVIEW_URL).status_code == 200
    cache.clear()
    assert client.get(OVERVIEW_URL).status_code == 200


def test_no_cookie_no_round_trip(db, commands):
    assert Client().get("/healthz").status_code == 200
    assert Client().get("/accounts/login/").status_code == 200
    assert commands == []


def request_with_cookie(path: str, cookie: str = "a" * 32, **headers: str) -> HttpRequest:
    request = RequestFactory().get(path, headers=headers)
    request.COOKIES["sessionid"] = cookie
    return request


def test_it_asks_for_what_the_page_will_read(settings):
    session = "django.contrib.sessions.cached_dbaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    usage = prefetch.request_keys(request_with_cookie(USAGE_URL))
    assert usage == [session, authcache.GENERATION_KEY]
    overview = prefetch.request_keys(request_with_cookie(OVERVIEW_URL))
    assert overview[:2] == usage and len(overview) == 4
    assert overview[2] == f"page-generation:{ACCOUNT_ID}"
    assert overview[3].startswith("page:")
    # A hard reload does not read the kept page; a malformed cookie reads nothing.
    hard = prefetch.request_keys(request_with_cookie(OVERVIEW_URL, **{"Cache-Control": "no-cache"}))
    assert hard == overview[:3]
    assert prefetch.request_keys(request_with_cookie(OVERVIEW_URL, cookie="short")) == []
    assert prefetch.request_keys(request_with_cookie("/no/such/page/"))[2:] == []
    settings.PAGE_CACHE_SECONDS = 0
    settings.AUTH_CACHE_SECONDS = 0
    assert prefetch.request_keys(request_with_cookie(OVERVIEW_URL)) == [session]


def test_a_prefetched_key_is_given_out_once(settings):
    settings.PAGE_CACHE_SECONDS = 5
    cache.set(authcache.GENERATION_KEY, "before")
    seen: list[Any] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(prefetch.get_many([authcache.GENERATION_KEY]))
        cache.set(authcache.GENERATION_KEY, "after")  # a write of this request
        seen.append(prefetch.get_many([authcache.GENERATION_KEY]))
        return HttpResponse()

    prefetch.middleware(view)(request_with_cookie(USAGE_URL))
    assert seen == [{authcache.GENERATION_KEY: "before"}, {authcache.GENERATION_KEY: "after"}]
    # Outside a request, the cache is asked.
    assert prefetch.get_many([authcache.GENERATION_KEY]) == {authcache.GENERATION_KEY: "after"}
    assert {"overview"} == pagecache.KEPT_VIEWS
