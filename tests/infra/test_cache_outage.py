"""Pages stay up when Redis does not: refused, or a black hole that never answers.

The dashboard's cache is pointed (through settings.CACHES, as in production) at a port on
127.0.0.1 that nothing listens on, or at a socket that takes connections and never answers.
Timeouts are short here so that the tests are quick; the bound on a page's time is a
generous multiple of them, a claim about "bounded", never about speed.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import redis
from django.contrib.sessions.models import Session
from django.core.cache import cache, caches
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse
from prometheus_client import REGISTRY

from dashboard.infra import cache as resilient
from dashboard.infra import upstream
from dashboard.models import AccountAccess, Topup
from dashboard.services import reads
from tests.conftest import (
    ACCOUNT_ID,
    OVERVIEW_URL,
    PASSWORD,
    SAFETY_TIMEOUT,
    eventually,
    flight_users,
    hold,
    settings_module,
)
from tests.topup_flow import confirm_data

REDIS_URL = "redis://127.0.0.1:6379/0"
BACKEND = "dashboard.infra.cache.ResilientRedisCache"
CONNECT_TIMEOUT = 0.1
READ_TIMEOUT = 0.25
#: A page with Redis out of reach takes at most this long: many times the timeouts (a busy
#: machine), far less than a page that paid a timeout per cache operation of every card.
PAGE_BOUND = 20 * READ_TIMEOUT
BALANCE = "GET credit-balance"
LOGIN = "/accounts/login/"
CREATE = reverse("dashboard:topup_create", args=[ACCOUNT_ID])


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A Redis URL whose server takes connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


@pytest.fixture
def refused() -> str:
    return f"redis://127.0.0.1:{closed_port()}/0"


@pytest.fixture(autouse=True)
def _fresh_outages() -> None:
    """What this process knew of a Redis (down since, warned at) starts from nothing."""
    resilient.forget_outages()


@pytest.fixture
def use_redis(settings: Any, _empty_cache: None) -> Iterator[Callable[[str], None]]:
    """Points the dashboard's cache (and cached_db sessions) at a Redis URL, as settings do
    with REDIS_URL; back to the local cache before conftest's teardown clears "the" cache."""
    local = settings.CACHES

    def use(url: str) -> None:
        settings.CACHES = {
            "default": {
                "BACKEND": BACKEND,
                "LOCATION": url,
                "KEY_PREFIX": f"test-outage-{uuid.uuid4().hex}",
                "OPTIONS": {
                    "socket_connect_timeout": CONNECT_TIMEOUT,
                    "socket_timeout": READ_TIMEOUT,
                },
            }
        }
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

    yield use
    settings.CACHES = local


def unavailable(operation: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "dashboard_cache_unavailable_total", {"operation": operation, "reason": reason}
    )
    return value or 0.0


def log_in(username: str) -> Client:
    client = Client()
    response = client.post(LOGIN, {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:500]
    assert response["Location"] == "/"
    return client


def balance_figure(html: str) -> str:
    start = html.index('<section id="balance-card"')
    return html[start : html.index("</section>", start)]


# ---------------------------------------------------------------- pages


@pytest.mark.parametrize("down", ["refused", "black_hole"])
def test_a_user_logs_in_and_sees_the_overview_with_its_figures(
    request: pytest.FixtureRequest, use_redis, lead, sim, down: str
) -> None:
    use_redis(request.getfixturevalue(down))
    client = log_in("lena")
    # The session lives in the database (cached_db's own store), Redis could not keep it.
    assert Session.objects.count() == 1
    started = time.monotonic()
    response = client.get(OVERVIEW_URL)
    took = time.monotonic() - started
    assert response.status_code == 200
    assert "Still loading" not in response.text
    card = balance_figure(response.text)
    assert "$" in card and "could not" not in card.lower()
    assert sim.calls[BALANCE] == 1
    assert took < PAGE_BOUND, f"the overview took {took:.2f}s with Redis {down}"
    # Another page of the same session: still logged in, from the database; the figures are
    # this process's own copy meanwhile, not a second call.
    assert client.get(OVERVIEW_URL).status_code == 200
    assert sim.calls[BALANCE] == 1


def test_a_black_holed_redis_costs_a_page_its_timeout_once_not_per_operation(
    use_redis, black_hole, lead, sim
) -> None:
    use_redis(black_hole)
    client = log_in("lena")
    pages = []
    for _ in range(3):
        started = time.monotonic()
        assert client.get(OVERVIEW_URL).status_code == 200
        pages.append(time.monotonic() - started)
    # Operations after the first failure were answered at once, without trying Redis.
    assert unavailable("get", "skipped") > 0
    assert sum(pages) < PAGE_BOUND, pages


def test_a_revoked_grant_is_refused_at_once_without_redis(use_redis, refused, lead, sim):
    use_redis(refused)
    client = log_in("lena")
    assert client.get(OVERVIEW_URL).status_code == 200
    # No snapshot of the user could be kept or told of the change: each page reads the user,
    # permissions and grants from the database, as without the cache.
    AccountAccess.objects.filter(user=lead, account_id=ACCOUNT_ID).delete()
    assert client.get(OVERVIEW_URL).status_code == 404


def test_a_double_submitted_top_up_pays_once_without_redis(use_redis, refused, finance, sim):
    use_redis(refused)
    client = log_in("frank")
    data = confirm_data(client, CREATE, "25")
    first = client.post(CREATE, data)
    second = client.post(CREATE, data)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert sim.calls["POST topup"] == 1
    assert Topup.objects.count() == 1
    assert client.get(first["Location"]).status_code == 200


def test_a_logout_during_the_outage_ends_the_session(use_redis, refused, lead, sim):
    use_redis(refused)
    client = log_in("lena")
    assert client.post(reverse("logout")).status_code == 302
    assert Session.objects.count() == 0
    assert client.get(OVERVIEW_URL).status_code == 302


def test_login_throttling_holds_without_redis(use_redis, black_hole, lead, sim) -> None:
    """Failed logins are counted in the database: a Redis out of reach switches nothing off."""
    use_redis(black_hole)
    for _ in range(4):
        response = Client().post(LOGIN, {"username": "lena", "password": "wrong guess"})
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.text
    response = Client().post(LOGIN, {"username": "lena", "password": "wrong guess"})
    assert response.status_code == 429
    assert Client().post(LOGIN, {"username": "lena", "password": PASSWORD}).status_code == 429


# ---------------------------------------------------------------- probes


@pytest.mark.parametrize("down", ["refused", "black_hole"])
def test_readyz_names_the_cache_with_503_and_healthz_stays_200(
    request: pytest.FixtureRequest, use_redis, db, client: Client, sim, down: str
) -> None:
    use_redis(request.getfixturevalue(down))
    # A page first: the cache now skips Redis for a while, which must not fool the probe.
    Client().get(LOGIN)
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = json.loads(response.content)["checks"]
    expected = "ConnectionError" if down == "refused" else "TimeoutError"
    assert (checks["cache"]["ok"], checks["cache"]["error"]) == (False, expected)
    assert checks["database"]["ok"] is True and checks["upstream"]["ok"] is True
    assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------- the backend


def test_it_warns_once_per_period_and_counts_every_operation(
    use_redis, refused, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_redis(refused)
    backend = caches["default"]
    assert isinstance(backend, resilient.ResilientRedisCache)
    monkeypatch.setattr(resilient.ResilientRedisCache, "retry_after", 0.0)
    errors_before = unavailable("get", "error")
    with caplog.at_level(logging.WARNING, logger="dashboard.infra.cache"):
        for _ in range(25):
            assert cache.get("anything") is None
        cache.set("anything", 1)
        assert cache.get_many(["a", "b"]) == {}
        assert cache.add("claim", 1) is False
    warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "ConnectionError" in warnings[0].getMessage()
    assert unavailable("get", "error") - errors_before == 25
    # A new period (the period over at once): one more warning, saying how many went unsaid.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dashboard.infra.cache"):
        monkeypatch.setattr(resilient.ResilientRedisCache, "warn_every", 0.0)
        cache.get("anything")
        monkeypatch.setattr(resilient.ResilientRedisCache, "warn_every", 3600.0)
        for _ in range(4):
            cache.get("anything")
    warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1
    assert "; 28 cache operations answered without it" in warnings[0].getMessage()


def test_it_raises_inside_errors_raised(use_redis, refused) -> None:
    use_redis(refused)
    with resilient.errors_raised(), pytest.raises(redis.exceptions.ConnectionError):
        cache.get("anything")
    assert cache.get("anything", "default") == "default"


@pytest.fixture
def real_redis(use_redis) -> Iterator[redis.Redis]:
    """The local Redis under a prefix of this test's own, its keys removed afterwards."""
    use_redis(REDIS_URL)
    server = redis.Redis.from_url(REDIS_URL)
    prefix = caches["default"].key_prefix
    try:
        yield server
    finally:
        for key in server.scan_iter(match=f"{prefix}:*"):
            server.delete(key)
        server.close()


def test_it_deletes_what_it_could_not_once_redis_answers_again(
    real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    backend = caches["default"]
    assert isinstance(backend, resilient.ResilientRedisCache)
    cache.set("session-of-someone", "data", 60)
    made = backend.make_and_validate_key("session-of-someone")
    # Redis is not tried for a moment after a failure: here half a second, then waited out.
    monkeypatch.setattr(resilient.ResilientRedisCache, "retry_after", 0.5)

    def cut(*args: object, **kwargs: object) -> Any:
        raise redis.exceptions.ConnectionError("Connection refused.")

    with monkeypatch.context() as outage:
        outage.setattr(redis.Redis, "delete", cut)
        outage.setattr(redis.Redis, "get", cut)
        assert cache.delete("session-of-someone") is False
        # While Redis was just found down, the next operation does not try it.
        assert cache.get("other") is None
        assert unavailable("get", "skipped") >= 1
    assert real_redis.get(made) is not None
    time.sleep(0.6)
    with caplog.at_level(logging.WARNING, logger="dashboard.infra.cache"):
        assert cache.get("other") is None
    assert real_redis.get(made) is None
    assert "answers again; deleting the 1 keys" in caplog.text


# ---------------------------------------------------------------- reads and the lock


def test_concurrent_reads_still_make_one_upstream_call_per_process(use_redis, refused, sim) -> None:
    use_redis(refused)
    hold(sim, BALANCE)
    results: list[upstream.Fetched[Any]] = []
    threads = [
        threading.Thread(target=lambda: results.append(reads.credit_balance(ACCOUNT_ID)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    eventually(
        lambda: flight_users(ACCOUNT_ID, "credit-balance") == 8 and sim.in_flight == {BALANCE: 1},
        "eight readers in the flight of one call",
    )
    sim.release()
    for thread in threads:
        thread.join(SAFETY_TIMEOUT)
        assert not thread.is_alive()
    assert sim.calls[BALANCE] == 1
    assert len(results) == 8 and all(result.ok for result in results)


def test_the_shared_lock_falls_back_to_this_process_when_redis_fails(
    use_redis, refused, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_redis(refused)
    # Redis is tried for every operation, the lock included (not skipped after the first).
    monkeypatch.setattr(resilient.ResilientRedisCache, "retry_after", 0.0)
    lock_errors = unavailable("lock", "error")
    assert reads.credit_balance(ACCOUNT_ID).ok
    assert unavailable("lock", "error") == lock_errors + 1
    assert sim.calls[BALANCE] == 1


# ---------------------------------------------------------------- settings


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_module()


def test_redis_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_TIMEOUT", raising=False)
    default = load_settings(monkeypatch, REDIS_URL=REDIS_URL).CACHES["default"]
    assert default["BACKEND"] == BACKEND
    assert default["OPTIONS"] == {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}
    loaded = load_settings(monkeypatch, REDIS_URL=REDIS_URL, REDIS_TIMEOUT="0.3")
    assert loaded.CACHES["default"]["OPTIONS"]["socket_timeout"] == 0.3


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_redis_timeout_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_TIMEOUT must be"):
        load_settings(monkeypatch, REDIS_URL=REDIS_URL, REDIS_TIMEOUT=value)
