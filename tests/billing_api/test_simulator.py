"""The simulator's core, driven in process through ``Simulator.transport()``."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from billing_api import models
from billing_api.simulator import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_TOKEN,
    ENDPOINTS,
    HOSTILE_HTML,
    HOSTILE_URL,
    FaultError,
    Simulator,
)
from tests.billing_api.conftest import START, Clock
from tests.conftest import SAFETY_TIMEOUT

OTHER_ACCOUNT = "9a7806061c88ada191ed06f989cc3dac"
THIRD_ACCOUNT = "5f0c1a2b3c4d5e6f708192a3b4c5d6e7"
READ_TOKEN = "read-only-token"
HOUR = 3600
#: Holds a call until the test releases it: longer than any test runs.
HELD = 30


def make_client(
    sim: Simulator,
    account: str = DEFAULT_ACCOUNT_ID,
    token: str | None = None,
    *,
    kind=httpx.Client,
):
    """An httpx client (``kind=httpx.AsyncClient`` for an async one) on the account's billing."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return kind(
        transport=sim.transport(),
        base_url=f"https://api.cloudflare.test/client/v4/accounts/{account}/ai-gateway/billing/",
        headers=headers,
    )


@pytest.fixture
def sim(clock: Clock):
    simulator = Simulator(
        seed=7,
        read_token=READ_TOKEN,
        accounts=(DEFAULT_ACCOUNT_ID, OTHER_ACCOUNT, THIRD_ACCOUNT),
        clock=clock,
        topup_settle_seconds=5.0,
    )
    yield simulator
    simulator.clear_faults()  # releases whatever the test still holds


def call_in_thread(sim: Simulator, path: str) -> queue.Queue[int]:
    """Calls ``path`` from a thread of its own; the status code arrives on the queue."""
    answers: queue.Queue[int] = queue.Queue()

    def call() -> None:
        with make_client(sim, token=DEFAULT_TOKEN) as c:
            answers.put(c.get(path).status_code)

    threading.Thread(target=call, daemon=True).start()
    return answers


@pytest.fixture
def client(sim: Simulator):
    with make_client(sim, token=DEFAULT_TOKEN) as c:
        yield c


@pytest.fixture
def current_sim(clock: Clock) -> Simulator:
    return Simulator(seed=7, mode="current", accounts=(DEFAULT_ACCOUNT_ID,), clock=clock)


def result(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), response.text
    body = response.json()
    assert body["success"] is True
    assert body["errors"] == [] and body["messages"] == []
    return body["result"]


def error_messages(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["success"] is False
    assert body["result"] is None
    assert "messages" not in body
    return [e["message"] for e in body["errors"]]


def drop_auto_topup(client: httpx.Client) -> None:
    assert client.delete("topup/config").status_code == 200


# ---------------------------------------------------------------- envelope, auth, routing


def test_it_wraps_results_in_the_cloudflare_envelope_with_cloudflare_headers(client):
    response = client.get("credit-balance")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cf-ray"]
    assert response.headers["ratelimit"].startswith('"default";r=')
    assert response.headers["ratelimit-policy"] == '"default";q=1200;w=300'
    assert "retry-after" not in response.headers
    assert set(response.json()) == {"success", "errors", "messages", "result"}


def test_it_rejects_a_missing_token_with_401(sim):
    with make_client(sim) as anonymous:
        response = anonymous.get("credit-balance")
    assert response.status_code == 401
    assert response.json()["errors"] == [{"code": 10000, "message": "Authentication error"}]
    assert error_messages(response) == ["Authentication error"]


@pytest.mark.parametrize("header", ["Bearer wrong-token", "Bearer ", "Basic abc", DEFAULT_TOKEN])
def test_it_rejects_a_wrong_token_with_401(sim, header):
    with make_client(sim) as c:
        response = c.get("credit-balance", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == 10000


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "topup", {"amount": 5000}),
        ("POST", "topup/status", {"payment_intent_id": "in_1abc"}),
        ("POST", "topup/config", {"amount": 5000, "threshold": 1000}),
        ("DELETE", "topup/config", None),
        ("POST", "spending-limit", {"amount": 5000, "duration": "daily", "strategy": "fixed"}),
        ("DELETE", "spending-limit", None),
    ],
)
def test_it_refuses_every_write_with_the_read_only_token(sim, method, path, body):
    with make_client(sim, token=READ_TOKEN) as reader:
        response = reader.request(method, path, json=body)
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == 10000


def test_it_serves_reads_with_the_read_only_token(sim):
    with make_client(sim, token=READ_TOKEN) as reader:
        for path in ("credit-balance", "invoice-preview", "topup/config", "spending-limit"):
            assert reader.get(path).status_code == 200


def test_it_answers_404_with_an_envelope_for_an_unknown_account(sim):
    with make_client(sim, account="0" * 32, token=DEFAULT_TOKEN) as c:
        response = c.get("credit-balance")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == 7003
    assert "0" * 32 in error_messages(response)[0]


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "balance"), ("GET", "topup"), ("PUT", "topup/config")]
)
def test_it_answers_404_for_an_unknown_path(client, sim, method, path):
    response = client.request(method, path)
    assert response.status_code == 404
    assert error_messages(response) == ["No route for that URI"]
    assert sum(sim.calls.values()) == 0


def test_it_answers_404_outside_the_billing_api(sim):
    status, headers, body = sim.handle("GET", "/client/v4/zones", {}, {}, b"")
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["success"] is False


def test_it_reads_headers_case_insensitively_through_handle(sim):
    path = f"/client/v4/accounts/{DEFAULT_ACCOUNT_ID}/ai-gateway/billing/credit-balance"
    status, _, body = sim.handle("get", path, {}, {"AUTHORIZATION": f"bearer {DEFAULT_TOKEN}"}, b"")
    assert status == 200
    assert json.loads(body)["result"]["balance"] > 0


# ---------------------------------------------------------------- validation

VALIDATION_CASES = [
    ("POST", "topup", {"amount": 999}, "amount: must be at least 1000 (cents)"),
    ("POST", "topup", {"amount": 1000.0}, "amount: must be an integer (cents)"),
    ("POST", "topup", {"amount": "5000"}, "amount: must be an integer (cents)"),
    ("POST", "topup", {"amount": True}, "amount: must be an integer (cents)"),
    ("POST", "topup", {}, "amount: required"),
    ("POST", "topup", {"amount": 5000, "currency": "usd"}, "currency: unknown field"),
    ("POST", "topup", {"amount": 5000, "payment_method_id": 7}, "payment_method_id: must be"),
    (
        "POST",
        "topup",
        {"amount": 5000, "payment_method_id": "card_1"},
        "payment_method_id: no such",
    ),
    ("POST", "topup", {"amount": 100_001}, "amount: must be at most 100000 (cents)"),
    ("POST", "topup/status", {}, "payment_intent_id: required"),
    ("POST", "topup/status", {"payment_intent_id": 12}, "payment_intent_id: must be"),
    ("POST", "topup/config", {"amount": 999, "threshold": 500}, "amount: must be at least 1000"),
    ("POST", "topup/config", {"amount": 1000, "threshold": 499}, "threshold: must be at least 500"),
    ("POST", "topup/config", {"amount": 1000}, "threshold: required"),
    ("POST", "topup/config", {"amount": 1000, "threshold": 500, "x": 1}, "x: unknown field"),
    (
        "POST",
        "spending-limit",
        {"amount": 99, "duration": "daily", "strategy": "fixed"},
        "amount: must be at least 100 (cents)",
    ),
    (
        "POST",
        "spending-limit",
        {"amount": 100, "duration": "yearly", "strategy": "fixed"},
        "duration: must be one of daily, weekly, monthly",
    ),
    (
        "POST",
        "spending-limit",
        {"amount": 100, "duration": "daily", "strategy": "rolling"},
        "strategy: must be one of fixed, sliding",
    ),
    ("POST", "spending-limit", {"amount": 100, "duration": "daily"}, "strategy: required"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), VALIDATION_CASES)
def test_it_refuses_invalid_bodies_with_a_400_naming_the_field(client, method, path, body, message):
    response = client.request(method, path, json=body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] in (1001, 1000)
    assert any(message in m for m in error_messages(response)), error_messages(response)


def test_it_reports_every_invalid_field_at_once(client):
    response = client.post("topup/config", json={"amount": 1, "threshold": 1, "extra": 1})
    assert response.status_code == 400
    assert len(response.json()["errors"]) == 3


@pytest.mark.parametrize("content", [b"amount=5000", b"", b"{", b"[1, 2]", b'"text"'])
def test_it_refuses_a_body_that_is_not_a_json_object(client, content):
    response = client.post("topup", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] in (6007, 1001)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "value_grouping_window: required"),
        ({"value_grouping_window": "week"}, "value_grouping_window: required, one of day, hour"),
        (
            {"value_grouping_window": "hour", "start_time": 0, "end_time": 32 * 86_400_000},
            "hourly window may span at most 31 days",
        ),
        (
            {"value_grouping_window": "day", "start_time": 2000, "end_time": 1000},
            "start_time: must be before end_time",
        ),
        ({"value_grouping_window": "day", "start_time": "yesterday"}, "start_time: must be"),
    ],
)
def test_it_validates_usage_history_queries(client, query, message):
    response = client.get("usage-history", params=query)
    assert response.status_code == 400
    assert any(message in m for m in error_messages(response))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"type": "refund"}, "type: must be one of auto, all, manual"),
        ({"page": "0"}, "page: must be at least 1"),
        ({"per_page": "x"}, "per_page: must be an integer"),
        ({"per_page": "101"}, "per_page: must be at most 100"),
    ],
)
def test_it_validates_invoice_history_queries(client, query, message):
    response = client.get("invoice-history", params=query)
    assert response.status_code == 400
    assert message in error_messages(response)


def test_it_refuses_a_topup_without_a_payment_method(sim):
    with make_client(sim, account=OTHER_ACCOUNT, token=DEFAULT_TOKEN) as c:
        balance = result(c.get("credit-balance"))
        assert balance["payment_method"] is None
        assert balance["has_default_payment_method"] is False
        response = c.post("topup", json={"amount": 5000})
    assert response.status_code == 400
    assert "No default payment method" in error_messages(response)[0]


def test_it_accepts_a_payment_method_id_on_a_topup(sim):
    with make_client(sim, account=OTHER_ACCOUNT, token=DEFAULT_TOKEN) as c:
        topup = result(c.post("topup", json={"amount": 5000, "payment_method_id": "pm_1Card"}))
    assert topup["payment_intent_id"].startswith("in_")


def test_it_publishes_topup_limits(client):
    limits = models.TopupLimits.model_validate(result(client.get("topup/limits")))
    assert (limits.min_cents, limits.max_cents, limits.currency) == (1000, 100_000, "USD")


# ---------------------------------------------------------------- modes


def test_it_accepts_every_write_in_default_mode(client):
    created = client.post(
        "spending-limit", json={"amount": 12345, "duration": "weekly", "strategy": "sliding"}
    )
    assert created.status_code == 201
    assert result(created) == {"amount": 12345, "duration": "weekly", "strategy": "sliding"}
    assert result(client.get("spending-limit")) == {
        "enabled": True,
        "config": {"amount": 12345, "duration": "weekly", "strategy": "sliding"},
    }
    assert result(client.delete("spending-limit")) == {}
    assert result(client.delete("spending-limit")) == {}  # idempotent
    assert result(client.get("spending-limit")) == {
        "enabled": False,
        "config": {"amount": None, "duration": None, "strategy": None},
    }

    assert result(client.post("topup/config", json={"amount": 2000, "threshold": 600})) == {
        "amount": 2000,
        "threshold": 600,
    }
    assert result(client.get("topup/config"))["amount"] == 2000
    assert result(client.delete("topup/config")) == {}
    assert result(client.get("topup/config")) == {
        "amount": None,
        "threshold": None,
        "disabledReason": None,
        "error": None,
        "lastFailedAt": None,
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        (
            "POST",
            "spending-limit",
            {"amount": 5000, "duration": "daily", "strategy": "fixed"},
            "spending limits can no longer be created, enabled, or modified",
        ),
        ("POST", "spending-limit", {"amount": 1}, "https://developers.cloudflare.com/ai-gateway"),
        ("POST", "topup/config", {"amount": 5000, "threshold": 1000}, "Dashboard sessions only"),
        ("DELETE", "topup/config", None, "API token, OAuth, and service credentials are rejected"),
    ],
)
def test_it_refuses_restricted_writes_with_403_in_current_mode(
    current_sim, method, path, body, message
):
    with make_client(current_sim, token=DEFAULT_TOKEN) as c:
        before = c.get("topup/config").json()
        response = c.request(method, path, json=body)
        assert response.status_code == 403
        assert message in error_messages(response)[0]
        assert c.get("topup/config").json()["result"] == before["result"]


def test_it_still_deletes_the_spending_limit_and_tops_up_in_current_mode(current_sim):
    with make_client(current_sim, token=DEFAULT_TOKEN) as c:
        assert result(c.get("spending-limit"))["enabled"] is True  # a legacy limit exists
        assert result(c.delete("spending-limit")) == {}
        assert result(c.get("spending-limit"))["enabled"] is False
        assert result(c.post("topup", json={"amount": 1000}))["payment_intent_id"]


def test_it_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        Simulator(mode="future")  # type: ignore[arg-type]


# ---------------------------------------------------------------- top-ups


def test_it_settles_a_topup_after_the_settle_time(client, clock):
    drop_auto_topup(client)
    before = result(client.get("credit-balance"))["balance"]
    topup = result(client.post("topup", json={"amount": 5000}))
    assert topup["client_secret"].startswith("pi_") and "_secret_" in topup["client_secret"]
    assert topup["onboarding"] is False
    assert (topup["brand"], topup["last4"]) == ("visa", "4242")
    assert models.Topup.model_validate(topup).payment_intent_id == topup["payment_intent_id"]
    intent = {"payment_intent_id": topup["payment_intent_id"]}

    assert result(client.post("topup/status", json=intent))["status"] == "pending"
    assert result(client.get("credit-balance"))["balance"] == before
    clock.advance(4.9)
    assert result(client.post("topup/status", json=intent))["status"] == "pending"
    clock.advance(0.2)
    status = result(client.post("topup/status", json=intent))
    assert models.TopupStatus.model_validate(status).status == "completed"

    assert result(client.get("credit-balance"))["balance"] == pytest.approx(before + 5000)
    newest = result(client.get("invoice-history", params={"type": "manual"}))["invoices"][0]
    assert newest["id"] == topup["payment_intent_id"]
    assert newest["invoice_origin"] == "manual"
    assert newest["status"] == "paid"
    assert newest["amount_paid"] == 5000
    assert newest["created_by"]
    assert newest["invoice_pdf"].startswith("https://pay.stripe.com/invoice/acct_1Simulated/")


def test_it_answers_404_for_the_status_of_an_unknown_topup(client):
    response = client.post("topup/status", json={"payment_intent_id": "in_unknown"})
    assert response.status_code == 404
    assert "payment_intent_id" in error_messages(response)[0]


def test_it_reports_a_past_invoice_as_completed(client):
    paid = next(
        i for i in result(client.get("invoice-history"))["invoices"] if i["status"] == "paid"
    )
    status = result(client.post("topup/status", json={"payment_intent_id": paid["id"]}))
    assert status["status"] == "completed"


# ---------------------------------------------------------------- auto top-up and burn-down


def test_it_fires_an_auto_topup_when_the_balance_crosses_the_threshold(client, sim, clock):
    account = sim.account(DEFAULT_ACCOUNT_ID)
    balance = result(client.get("credit-balance"))["balance"]
    threshold = int(balance) + 500  # already below: fires when the next hour is spent
    client.post("topup/config", json={"amount": 20_000, "threshold": threshold})
    autos_before = result(client.get("invoice-history", params={"type": "auto"}))
    next_hour_usage = account.hour_usage(account.settled_hour)

    clock.advance(HOUR)
    after = result(client.get("credit-balance"))
    assert after["balance"] == pytest.approx(balance - next_hour_usage + 20_000)
    autos = result(client.get("invoice-history", params={"type": "auto"}))
    assert autos["pagination"]["total_count"] == autos_before["pagination"]["total_count"] + 1
    newest = autos["invoices"][0]
    assert (newest["created_by"], newest["invoice_origin"], newest["amount_due"]) == (
        "auto-topup",
        "auto",
        20_000,
    )
    assert after["topup_config"]["error"] is None


def test_it_fails_an_armed_auto_topup_and_stops_until_the_rule_is_saved(client, sim, clock):
    balance = result(client.get("credit-balance"))["balance"]
    rule = {"amount": 20_000, "threshold": int(balance) + 500}
    client.post("topup/config", json=rule)
    sim.fail_auto_topup(DEFAULT_ACCOUNT_ID)

    clock.advance(HOUR)
    config = result(client.get("topup/config"))
    assert config["error"] == "Your card was declined."
    assert config["disabledReason"] == "payment_failed"
    assert config["lastFailedAt"] >= 10**11  # milliseconds
    parsed = models.TopupConfig.model_validate(config)
    assert parsed.has_failed
    assert parsed.last_failed_at is not None
    assert parsed.last_failed_at.timestamp() <= clock.now
    failed_balance = result(client.get("credit-balance"))["balance"]
    assert failed_balance < balance

    clock.advance(3 * HOUR)  # disabled: no further attempt
    assert result(client.get("credit-balance"))["balance"] < failed_balance
    assert result(client.get("topup/config"))["lastFailedAt"] == config["lastFailedAt"]

    client.post("topup/config", json=rule)  # saving the rule again re-enables it
    cleared = result(client.get("topup/config"))
    assert (cleared["error"], cleared["disabledReason"], cleared["lastFailedAt"]) == (None,) * 3
    low = result(client.get("credit-balance"))["balance"]
    clock.advance(HOUR)
    assert result(client.get("credit-balance"))["balance"] > low + 10_000


def test_it_burns_the_balance_down_hour_by_hour(client, clock):
    drop_auto_topup(client)
    start = result(client.get("credit-balance"))["balance"]
    clock.advance(HOUR / 2)  # the current hour is not over before 11:00
    assert result(client.get("credit-balance"))["balance"] == start
    clock.advance(3 * HOUR)
    now_ms = int(clock.now * 1000)
    spent_hours = result(
        client.get(
            "usage-history",
            params={
                "value_grouping_window": "hour",
                "start_time": int(START * 1000),
                "end_time": now_ms,
            },
        )
    )["history"]
    # At 13:50 the hours starting 10:00, 11:00 and 12:00 are over: all spent since 10:20.
    spent = sum(b["aggregated_value"] for b in spent_hours)
    assert len(spent_hours) == 3
    assert spent > 0
    assert result(client.get("credit-balance"))["balance"] == pytest.approx(start - spent)


def test_it_shapes_usage_by_weekday_and_business_hours(client):
    days = result(
        client.get(
            "usage-history",
            params={
                "value_grouping_window": "day",
                "start_time": int((START - 84 * 86400) * 1000),
                "end_time": int(START * 1000),
            },
        )
    )["history"]
    by_weekday: dict[int, list[float]] = {}
    for bucket in days:
        weekday = datetime.fromtimestamp(bucket["start_time"] / 1000, tz=UTC).weekday()
        by_weekday.setdefault(weekday, []).append(bucket["aggregated_value"])
    mean = {d: sum(v) / len(v) for d, v in by_weekday.items()}
    # Account offsets shift the local weekend by at most a few hours into Friday/Monday.
    assert min(mean[1], mean[2], mean[3]) > 1.5 * max(mean[5], mean[6])
    hours = result(client.get("usage-history", params={"value_grouping_window": "hour"}))["history"]
    values = [b["aggregated_value"] for b in hours]
    assert max(values) > 2 * min(values)


def test_it_defaults_the_usage_range_and_aligns_buckets(client):
    days = result(client.get("usage-history", params={"value_grouping_window": "day"}))["history"]
    hours = result(client.get("usage-history", params={"value_grouping_window": "hour"}))["history"]
    assert len(days) == 31  # 30 days back from 10:20 touches 31 UTC days
    assert len(hours) == 24
    for bucket in days + hours:
        assert bucket["id"].startswith("mtrusgsum_")
        assert bucket["start_time"] >= 10**11 and bucket["end_time"] >= 10**11  # ms
    assert all(b["start_time"] % 86_400_000 == 0 for b in days)
    assert all(b["end_time"] - b["start_time"] == 3_600_000 for b in hours)
    assert hours[-1]["end_time"] <= START * 1000  # only hours that are over
    assert len({b["id"] for b in hours}) == 24
    models.UsageHistory.model_validate({"history": days})


def test_it_serves_no_usage_before_the_90_day_history(client):
    history = result(
        client.get(
            "usage-history",
            params={"value_grouping_window": "day", "start_time": 0, "end_time": int(START * 1000)},
        )
    )["history"]
    assert len(history) == 91  # 90 full days and today so far
    assert history[0]["start_time"] >= (START - 91 * 86400) * 1000


# ---------------------------------------------------------------- determinism


def snapshot(sim: Simulator, account: str = DEFAULT_ACCOUNT_ID) -> list[Any]:
    with make_client(sim, account=account, token=DEFAULT_TOKEN) as c:
        return [
            c.get("credit-balance").json(),
            c.get("usage-history", params={"value_grouping_window": "hour"}).json(),
            c.get("invoice-history").json(),
            c.get("invoice-preview").json(),
            c.get("topup/config").json(),
        ]


def test_it_is_deterministic_for_a_seed():
    first = Simulator(seed=3, clock=Clock())
    second = Simulator(seed=3, clock=Clock())
    assert snapshot(first) == snapshot(second)
    assert snapshot(first) != snapshot(Simulator(seed=4, clock=Clock()))


def test_it_gives_each_account_different_data(sim):
    data = [
        snapshot(sim, account) for account in (DEFAULT_ACCOUNT_ID, OTHER_ACCOUNT, THIRD_ACCOUNT)
    ]
    balances = {d[0]["result"]["balance"] for d in data}
    assert len(balances) == 3
    assert data[0][1] != data[2][1]
    default, other = data[0][0]["result"], data[1][0]["result"]
    assert default["payment_method"] == {"brand": "visa", "last4": "4242"}
    assert default["topup_config"]["amount"] is not None
    assert other["payment_method"] is None
    assert other["topup_config"] == {
        "amount": None,
        "threshold": None,
        "disabledReason": None,
        "error": None,
        "lastFailedAt": None,
    }


# ---------------------------------------------------------------- invoices


def test_it_paginates_invoice_history_newest_first(client):
    first = result(client.get("invoice-history"))
    total = first["pagination"]["total_count"]
    assert total >= 25
    assert first["pagination"] == {
        "has_more": True,
        "page": 1,
        "per_page": 20,
        "total_count": total,
    }
    created = [i["created"] for i in first["invoices"]]
    assert created == sorted(created, reverse=True)
    assert all(c < 10**11 for c in created)  # seconds

    second = result(client.get("invoice-history", params={"page": 2}))
    assert second["pagination"]["has_more"] is False
    assert len(second["invoices"]) == total - 20
    assert second["invoices"][0]["created"] <= created[-1]

    small = result(client.get("invoice-history", params={"per_page": 5, "page": 3}))
    assert len(small["invoices"]) == 5 and small["pagination"]["page"] == 3
    beyond = result(client.get("invoice-history", params={"page": 99}))
    assert beyond["invoices"] == [] and beyond["pagination"]["has_more"] is False


def test_it_filters_invoices_by_type(client):
    everything = result(client.get("invoice-history", params={"type": "all", "per_page": 100}))
    auto = result(client.get("invoice-history", params={"type": "auto", "per_page": 100}))
    manual = result(client.get("invoice-history", params={"type": "manual", "per_page": 100}))
    assert {i["invoice_origin"] for i in auto["invoices"]} == {"auto"}
    assert {i["invoice_origin"] for i in manual["invoices"]} == {"manual"}
    assert {i["created_by"] for i in auto["invoices"]} == {"auto-topup"}
    assert len(auto["invoices"]) + len(manual["invoices"]) == len(everything["invoices"])
    statuses = [i["status"] for i in everything["invoices"]]
    assert statuses.count("open") == 1 and statuses.count("void") == 1
    opened = next(i for i in everything["invoices"] if i["status"] == "open")
    assert opened["amount_paid"] == 0 and opened["amount_remaining"] == opened["amount_due"]


def test_it_previews_the_current_month_as_a_draft_with_usage_lines(client):
    preview = result(client.get("invoice-preview"))
    assert preview["status"] == "draft"
    assert preview["period_start"] == datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    assert preview["period_end"] == datetime(2026, 4, 1, tzinfo=UTC).timestamp()
    lines = preview["invoice_lines"]
    assert 3 <= len(lines) <= 5
    assert preview["amount_due"] == sum(line["amount"] for line in lines) > 0
    assert all(line["description"].endswith("tokens") for line in lines)
    assert all(isinstance(line["pricing"]["unit_amount_decimal"], str) for line in lines)
    assert all(line["period"]["start"] == preview["period_start"] for line in lines)


# ---------------------------------------------------------------- models parse every GET

GET_MODELS: list[tuple[str, dict[str, str], type[BaseModel]]] = [
    ("credit-balance", {}, models.CreditBalance),
    ("usage-history", {"value_grouping_window": "day"}, models.UsageHistory),
    ("usage-history", {"value_grouping_window": "hour"}, models.UsageHistory),
    ("invoice-history", {}, models.InvoiceHistory),
    ("invoice-preview", {}, models.InvoicePreview),
    ("topup/config", {}, models.TopupConfig),
    ("spending-limit", {}, models.SpendingLimit),
    ("topup/limits", {}, models.TopupLimits),
]


@pytest.mark.parametrize("account", [DEFAULT_ACCOUNT_ID, OTHER_ACCOUNT, THIRD_ACCOUNT])
@pytest.mark.parametrize(("path", "query", "model"), GET_MODELS)
def test_it_answers_every_get_with_a_payload_the_adapter_models_parse(
    sim, account, path, query, model
):
    with make_client(sim, account=account, token=DEFAULT_TOKEN) as c:
        envelope = models.Envelope.model_validate(c.get(path, params=query).json())
    assert envelope.success
    model.model_validate(envelope.result)


def test_it_reads_balances_as_cents(client):
    raw = result(client.get("credit-balance"))
    parsed = models.CreditBalance.model_validate(raw)
    assert float(parsed.balance) == pytest.approx(raw["balance"] / 100)


# ---------------------------------------------------------------- faults


def test_it_adds_latency(sim, client):
    sim.set_fault("GET credit-balance", "latency", seconds=0.05)
    started = time.perf_counter()
    assert client.get("credit-balance").status_code == 200
    assert time.perf_counter() - started >= 0.05
    # Only to its endpoint: another call answers while one held by the latency is still out.
    sim.set_fault("GET credit-balance", "latency", seconds=HELD)
    held = call_in_thread(sim, "credit-balance")
    assert sim.wait_for_in_flight({"GET credit-balance": 1}, SAFETY_TIMEOUT)
    assert client.get("spending-limit").status_code == 200
    assert sim.in_flight == {"GET credit-balance": 1}
    sim.release()
    assert held.get(timeout=SAFETY_TIMEOUT) == 200


def test_it_holds_calls_in_flight_until_released(sim, client):
    assert sim.in_flight == {}
    sim.set_fault("GET credit-balance", "latency", seconds=HELD)
    first, second = (call_in_thread(sim, "credit-balance") for _ in range(2))
    assert sim.wait_for_in_flight({"GET credit-balance": 2}, SAFETY_TIMEOUT)
    assert sim.in_flight == {"GET credit-balance": 2}
    assert sim.calls == {"GET credit-balance": 2}
    assert first.empty() and second.empty()  # held: the latency is 30 s
    sim.release()
    assert first.get(timeout=SAFETY_TIMEOUT) == second.get(timeout=SAFETY_TIMEOUT) == 200
    assert sim.in_flight == {}
    # The fault stays: a call after the release is held again, until released in turn.
    third = call_in_thread(sim, "credit-balance")
    assert sim.wait_for_in_flight({"GET credit-balance": 1}, SAFETY_TIMEOUT)
    sim.release()
    assert third.get(timeout=SAFETY_TIMEOUT) == 200
    assert sim.in_flight == {} and sim.calls == {"GET credit-balance": 3}


def test_it_releases_held_calls_when_faults_are_cleared(sim, client):
    sim.set_fault("*", "latency", seconds=HELD)
    held = call_in_thread(sim, "topup/limits")
    assert sim.wait_for_in_flight({"GET topup/limits": 1}, SAFETY_TIMEOUT)
    sim.clear_faults()
    assert held.get(timeout=SAFETY_TIMEOUT) == 200
    assert client.get("topup/limits").status_code == 200  # not held: the fault is gone


def test_it_counts_only_routed_calls_in_flight_and_only_while_they_are_served(sim, client):
    client.get("nowhere")
    with make_client(sim, token="wrong") as stranger:
        assert stranger.get("credit-balance").status_code == 401
    sim.set_fault("GET invoice-preview", "error", status=503)
    client.get("invoice-preview")
    assert sim.in_flight == {}
    assert sim.calls == {"GET credit-balance": 1, "GET invoice-preview": 1}
    # Waiting for what never happens says so when the safety bound is up.
    assert sim.wait_for_in_flight({"GET credit-balance": 1}, timeout=0) is False
    assert sim.wait_for_in_flight({}, timeout=0) is True


def test_it_holds_async_calls_side_by_side_without_blocking_the_event_loop(sim):
    sim.set_fault("GET credit-balance", "latency", seconds=HELD)

    async def fetch() -> list[int]:
        async with make_client(sim, token=DEFAULT_TOKEN, kind=httpx.AsyncClient) as c:
            calls = [asyncio.create_task(c.get("credit-balance")) for _ in range(3)]
            # The loop goes on while they are held: all three are out at once.
            out = await asyncio.to_thread(
                sim.wait_for_in_flight, {"GET credit-balance": 3}, SAFETY_TIMEOUT
            )
            sim.release()
            responses = await asyncio.gather(*calls)
            assert out
            return [r.status_code for r in responses]

    assert asyncio.run(fetch()) == [200, 200, 200]
    assert sim.in_flight == {}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_it_injects_server_errors_a_limited_number_of_times(sim, client, status):
    sim.set_fault("GET credit-balance", "error", status=status, times=2)
    assert [client.get("credit-balance").status_code for _ in range(3)] == [status, status, 200]
    assert sim.calls["GET credit-balance"] == 3


def test_it_rate_limits_once_then_succeeds(sim, client):
    sim.set_fault("GET invoice-history", "rate_limit", retry_after=7, times=1)
    limited = client.get("invoice-history")
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.json()["errors"][0]["code"] == 971
    assert client.get("invoice-history").status_code == 200


def test_it_hangs_into_a_read_timeout_in_process(sim, client):
    sim.set_fault("GET usage-history", "hang", seconds=30)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.get("usage-history", params={"value_grouping_window": "day"})
    with pytest.raises(httpx.ReadTimeout):
        client.get("usage-history", timeout=httpx.Timeout(5, read=0.01))
    # In process, a 30 s hang waits for a release only briefly (at most 50 ms, or the read
    # timeout), so a test of a hang never waits the hang out.
    assert time.monotonic() - started < SAFETY_TIMEOUT
    assert sim.in_flight == {}


def test_it_sends_malformed_json(sim, client):
    sim.set_fault("GET invoice-preview", "malformed")
    response = client.get("invoice-preview")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_it_answers_unsuccessfully_with_http_200(sim, client):
    sim.set_fault("POST topup", "unsuccessful", code=1234, message="card declined")
    response = client.post("topup", json={"amount": 5000})
    assert response.status_code == 200
    assert response.json() == {
        "success": False,
        "errors": [{"code": 1234, "message": "card declined"}],
        "result": None,
    }


def test_it_serves_hostile_strings(sim, client):
    for endpoint in ("GET invoice-history", "GET invoice-preview", "GET credit-balance"):
        sim.set_fault(endpoint, "hostile")
    invoices = result(client.get("invoice-history"))["invoices"]
    assert {i["description"] for i in invoices} == set(HOSTILE_HTML)
    assert {i["invoice_pdf"] for i in invoices} == {HOSTILE_URL}
    lines = result(client.get("invoice-preview"))["invoice_lines"]
    assert all(line["description"] in HOSTILE_HTML for line in lines)
    balance = result(client.get("credit-balance"))
    assert balance["payment_method"]["brand"] in HOSTILE_HTML
    assert balance["topup_config"]["error"] in HOSTILE_HTML
    models.InvoiceHistory.model_validate(
        {
            "invoices": invoices,
            "pagination": {
                "has_more": False,
                "page": 1,
                "per_page": 20,
                "total_count": len(invoices),
            },
        }
    )


def test_it_applies_a_star_fault_to_every_endpoint_and_clears_it(sim, client):
    sim.set_fault("*", "error", status=503)
    assert client.get("credit-balance").status_code == 503
    assert client.get("topup/limits").status_code == 503
    assert sim.faults() == {"*": [{"kind": "error", "times": None, "status": 503}]}
    sim.clear_faults()
    assert client.get("credit-balance").status_code == 200


def test_it_clears_faults_of_one_endpoint_only(sim, client):
    sim.set_fault("GET credit-balance", "error")
    sim.set_fault("GET spending-limit", "error")
    sim.clear_faults("GET credit-balance")
    assert client.get("credit-balance").status_code == 200
    assert client.get("spending-limit").status_code == 500


@pytest.mark.parametrize(
    ("endpoint", "kind", "params"),
    [
        ("GET nowhere", "error", {}),
        ("GET credit-balance", "explode", {}),
        ("GET credit-balance", "error", {"status": 404}),
        ("GET credit-balance", "latency", {"seconds": -1}),
        ("GET credit-balance", "latency", {"colour": "red"}),
        ("GET credit-balance", "error", {"times": 0}),
    ],
)
def test_it_refuses_a_bad_fault(sim, endpoint, kind, params):
    with pytest.raises(FaultError):
        sim.set_fault(endpoint, kind, **params)


# ---------------------------------------------------------------- calls and fronts


def test_it_counts_the_calls_it_serves_per_endpoint(sim, client):
    client.get("credit-balance")
    client.get("credit-balance")
    client.post("topup", json={"amount": 5000})
    client.get("nowhere")
    assert sim.calls == {"GET credit-balance": 2, "POST topup": 1}
    assert set(sim.calls) <= set(ENDPOINTS)
    sim.reset_calls()
    assert sim.calls == {}


def test_it_serves_async_clients_through_the_same_transport(sim):
    sim.set_fault("GET credit-balance", "latency", seconds=0.01)

    async def fetch() -> list[int]:
        async with make_client(sim, token=DEFAULT_TOKEN, kind=httpx.AsyncClient) as c:
            responses = await asyncio.gather(*(c.get("credit-balance") for _ in range(3)))
            return [r.status_code for r in responses]

    assert asyncio.run(fetch()) == [200, 200, 200]
    assert sim.calls["GET credit-balance"] == 3


def test_it_gives_tests_the_account_state(sim, clock):
    account = sim.account(DEFAULT_ACCOUNT_ID)
    assert account.balance > 0
    assert account.payment_method is not None
    with pytest.raises(KeyError):
        sim.account("nobody")
    sim.advance_clock(2 * HOUR)
    assert sim.now() == clock.now + 2 * HOUR
