"""/healthz and /readyz: public, cheap, each fault named in the answer, never a 500."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import ConnectionHandler
from django.test import Client

from billing_api.simulator import DEFAULT_TOKEN
from dashboard.infra import upstream
from dashboard.web.views import health
from tests.conftest import hold

CHECKS = {"database", "cache", "upstream"}
BALANCE = "GET credit-balance"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def readyz(client: Client) -> tuple[int, dict[str, dict[str, object]], str]:
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    answer = json.loads(body)
    assert set(answer["checks"]) == CHECKS
    for check in answer["checks"].values():
        assert isinstance(check["duration_ms"], float)
    return response.status_code, answer["checks"], body


@pytest.fixture
def unreachable_database(db, monkeypatch: pytest.MonkeyPatch) -> Iterator[BaseDatabaseWrapper]:
    """The database the probe checks points at a port nothing listens on (with a password)."""
    handler = ConnectionHandler(
        {
            "default": {
                **settings.DATABASES["default"],
                "HOST": "127.0.0.1",
                "PORT": str(closed_port()),
                "PASSWORD": "db-password-never-shown",
                "CONN_MAX_AGE": 0,
            }
        }
    )
    connection = handler["default"]
    monkeypatch.setattr(health, "connection", connection)
    yield connection
    connection.close()


@pytest.fixture
def redis_down() -> Iterator[RedisCache]:
    """A Redis cache whose server is not there: every call is refused."""
    down = RedisCache(f"redis://127.0.0.1:{closed_port()}/0", {})
    yield down
    down.close()


# ---------------------------------------------------------------- /healthz


def test_it_says_alive_without_a_login_a_database_or_a_session(client: Client) -> None:
    # No `db` fixture: any database access would fail this request.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert response["Content-Type"] == "text/plain"
    assert "no-store" in response["Cache-Control"]
    assert "Set-Cookie" not in response.headers
    assert client.head("/healthz").status_code == 200


def test_it_answers_only_reads(client: Client) -> None:
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405


def test_it_answers_probes_over_plain_http_while_pages_redirect_to_https(
    client: Client, settings
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/accounts/login/").status_code == 301
    assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------- /readyz


def test_it_is_ready_when_database_cache_and_upstream_answer(db, client: Client, sim) -> None:
    status, checks, _ = readyz(client)
    assert status == 200
    assert all(check["ok"] is True for check in checks.values()), checks
    assert sim.calls[BALANCE] == 1


def test_it_asks_cloudflare_once_for_many_probes(db, client: Client, sim) -> None:
    for _ in range(20):
        assert readyz(client)[0] == 200
    assert sim.calls[BALANCE] == 1


def test_it_shares_the_overview_cache_so_probes_cost_no_call_while_pages_are_viewed(
    db, client: Client, lead_client: Client, sim
) -> None:
    assert lead_client.get(f"/accounts/{settings.BILLING_DEFAULT_ACCOUNT}/").status_code == 200
    assert sim.calls[BALANCE] == 1
    assert readyz(client)[0] == 200
    assert sim.calls[BALANCE] == 1


def test_it_names_an_unreachable_database_with_503(
    client: Client, unreachable_database, sim
) -> None:
    status, checks, body = readyz(client)
    assert status == 503
    assert checks["database"]["ok"] is False
    assert checks["database"]["error"] == "OperationalError"
    assert checks["cache"]["ok"] is True
    assert checks["upstream"]["ok"] is True
    assert "db-password-never-shown" not in body


def test_it_names_a_cache_that_is_down_with_503(
    db, client: Client, redis_down, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "cache", redis_down)
    status, checks, _ = readyz(client)
    assert status == 503
    assert (checks["cache"]["ok"], checks["cache"]["error"]) == (False, "ConnectionError")
    assert checks["database"]["ok"] is True
    assert checks["upstream"]["ok"] is True


def test_it_fails_the_upstream_check_too_when_the_read_layer_has_no_cache(
    db, client: Client, redis_down, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "cache", redis_down)
    monkeypatch.setattr(upstream, "cache", redis_down)
    status, checks, _ = readyz(client)
    assert status == 503
    assert checks["cache"]["ok"] is False
    assert (checks["upstream"]["ok"], checks["upstream"]["error"]) == (False, "ConnectionError")


def test_it_names_a_failing_upstream_in_plain_words_with_503(db, client: Client, sim) -> None:
    sim.set_fault(BALANCE, "error", status=503)
    status, checks, body = readyz(client)
    assert status == 503
    assert checks["upstream"]["ok"] is False
    assert "Cloudflare" in str(checks["upstream"]["error"])
    assert checks["database"]["ok"] is True and checks["cache"]["ok"] is True
    assert DEFAULT_TOKEN not in body


def test_it_remembers_a_failing_upstream_instead_of_asking_at_every_probe(
    db, client: Client, sim
) -> None:
    sim.set_fault(BALANCE, "error", status=502)
    for _ in range(5):
        assert readyz(client)[0] == 503
    assert sim.calls[BALANCE] == 1


def test_it_gives_up_on_a_hanging_upstream_at_its_deadline(
    db, client: Client, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "UPSTREAM_DEADLINE", 0.05)
    hold(sim, BALANCE)
    status, checks, _ = readyz(client)
    assert status == 503
    assert checks["upstream"]["ok"] is False
    assert checks["upstream"]["error"] == "no answer from Cloudflare within 0.05 s"
    # The held call is released (and awaited) by the simulator fixture at the end.


def test_it_never_answers_500_when_everything_is_down(
    client: Client, unreachable_database, redis_down, monkeypatch: pytest.MonkeyPatch, sim
) -> None:
    monkeypatch.setattr(health, "cache", redis_down)
    monkeypatch.setattr(upstream, "cache", redis_down)
    status, checks, _ = readyz(client)
    assert status == 503
    assert not any(check["ok"] for check in checks.values())
    assert sim.calls[BALANCE] == 0
