"""BillingClient against scripted transports: every error path, retries, units."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from billing_api import errors, models
from billing_api.client import BillingClient
from tests.billing_api.conftest import (
    ACCOUNT,
    BASE,
    TOKEN,
    credit_balance_json,
    envelope,
    error_body,
    invoice_json,
    pagination,
)

PREFIX = f"/client/v4/accounts/{ACCOUNT}/ai-gateway/billing/"


Responder = Callable[[httpx.Request], httpx.Response]


class Script:
    """A transport answering from a list of responders, recording each request."""

    def __init__(self, *responders: Responder) -> None:
        self.responders = list(responders)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.responders)) - 1
        return self.responders[index](request)


def answer(status: int, body: Any = None, **headers: str) -> Responder:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return respond


def raw(status: int, content: bytes, content_type: str = "application/json") -> Responder:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"content-type": content_type})

    return respond


def fail(exc: type[httpx.TransportError]) -> Responder:
    def respond(request: httpx.Request) -> httpx.Response:
        raise exc(f"failed talking to {request.url.host} with {TOKEN}", request=request)

    return respond


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[Callable[[Script], BillingClient]]:
    made: list[BillingClient] = []

    def make(script: Script) -> BillingClient:
        http = httpx.Client(transport=httpx.MockTransport(script))
        client = BillingClient(BASE, TOKEN, ACCOUNT, http_client=http, sleep=sleeps.append)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


# ------------------------------------------------------------------ parsing and units


def test_it_reads_balance_in_cents_as_dollars(make_client):
    client = make_client(Script(answer(200, envelope(credit_balance_json()))))
    balance = client.credit_balance()
    assert balance.balance == Decimal("6.4019")
    assert balance.payment_method == models.PaymentMethod(brand="visa", last4="4242")
    assert balance.topup_config.amount == Decimal("20.00")
    assert balance.topup_config.threshold == Decimal("5.00")
    assert balance.topup_config.is_set


def test_it_sends_the_bearer_token_to_the_account_path(make_client):
    script = Script(answer(200, envelope(credit_balance_json())))
    make_client(script).credit_balance()
    request = script.requests[0]
    assert request.method == "GET"
    assert request.url.path == PREFIX + "credit-balance"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_it_reads_timestamps_in_milliseconds_and_seconds(make_client):
    config = {"amount": 2000, "threshold": 500, "lastFailedAt": 1764000000000, "error": "declined"}
    client = make_client(
        Script(
            answer(200, envelope(credit_balance_json(topup_config=config))),
            answer(200, envelope({"invoices": [invoice_json()], "pagination": pagination()})),
        )
    )
    assert client.credit_balance().topup_config.last_failed_at == datetime(
        2025, 11, 24, 16, 0, tzinfo=UTC
    )
    assert client.invoice_history().invoices[0].created == datetime(2025, 11, 24, 16, 0, tzinfo=UTC)


def test_it_accepts_a_topup_config_with_only_amount_and_threshold(make_client):
    config = {"amount": None, "threshold": None}
    client = make_client(Script(answer(200, envelope(credit_balance_json(topup_config=config)))))
    result = client.credit_balance().topup_config
    assert not result.is_set
    assert result.error is None and result.last_failed_at is None


def test_it_ignores_unknown_fields(make_client):
    body = credit_balance_json(brand_new_field={"x": 1})
    client = make_client(Script(answer(200, envelope(body))))
    assert client.credit_balance().balance == Decimal("6.4019")


def test_it_keeps_exact_digits_of_money(make_client):
    client = make_client(Script(answer(200, envelope(credit_balance_json(balance=0.1)))))
    assert client.credit_balance().balance == Decimal("0.001")


def test_it_sends_usage_range_as_unix_milliseconds(make_client):
    bucket = {
        "id": "mtrusgsum_1",
        "aggregated_value": 1234.5,
        "start_time": 1764000000000,
        "end_time": 1764003600000,
    }
    script = Script(answer(200, envelope({"history": [bucket]})))
    start = datetime(2025, 11, 24, tzinfo=UTC)
    end = datetime(2025, 11, 25, tzinfo=UTC)
    history = make_client(script).usage_history("hour", start, end)
    params = script.requests[0].url.params
    assert params["value_grouping_window"] == "hour"
    assert params["start_time"] == "1763942400000"
    assert params["end_time"] == "1764028800000"
    assert history.history[0].aggregated_value == Decimal("12.345")
    assert history.history[0].start_time == datetime(2025, 11, 24, 16, tzinfo=UTC)


def test_it_refuses_bad_usage_arguments_without_a_request(make_client):
    script = Script(answer(200, envelope({"history": []})))
    client = make_client(script)
    with pytest.raises(errors.ValidationError, match="'day' or 'hour'"):
        client.usage_history("week")
    with pytest.raises(errors.ValidationError, match="naive"):
        client.usage_history("day", datetime(2025, 1, 1))
    later, earlier = datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(errors.ValidationError, match="start before"):
        client.usage_history("day", later, earlier)
    assert script.requests == []


def test_it_asks_for_later_invoice_pages_and_filters_by_type(make_client):
    body = envelope({"invoices": [], "pagination": pagination(page=2)})
    script = Script(answer(200, body))
    client = make_client(script)
    client.invoice_history("manual", page=2)
    client.invoice_history()
    assert dict(script.requests[0].url.params) == {"type": "manual", "page": "2"}
    assert dict(script.requests[1].url.params) == {"type": "all"}


def test_it_parses_the_invoice_preview_with_lines(make_client):
    line = {
        "amount": 1250,
        "currency": "usd",
        "description": "OpenAI tokens",
        "period": {"start": 1764547200, "end": 1767225600},
        "pricing": {"unit_amount_decimal": "0.0025"},
        "quantity": 500000,
    }
    preview = {
        "id": "in_upcoming",
        "amount_due": 1250,
        "amount_paid": 0,
        "amount_remaining": 1250,
        "currency": "usd",
        "period_start": 1764547200,
        "period_end": 1767225600,
        "status": "draft",
        "invoice_lines": [line],
    }
    result = make_client(Script(answer(200, envelope(preview)))).invoice_preview()
    assert result.amount_due == Decimal("12.50")
    assert result.invoice_lines[0].pricing.unit_amount_decimal == "0.0025"
    assert result.invoice_lines[0].period.start == datetime(2025, 12, 1, tzinfo=UTC)


def test_it_reads_topup_limits_in_cents(make_client):
    body = envelope({"min_cents": 1000, "max_cents": 50000, "currency": "USD"})
    limits = make_client(Script(answer(200, body))).topup_limits()
    assert (limits.minimum, limits.maximum) == (Decimal("10.00"), Decimal("500.00"))


# ------------------------------------------------------------------ writes


def test_it_sends_a_topup_in_cents_and_hides_the_client_secret(make_client):
    result = {
        "client_secret": "pi_123_secret_456",
        "onboarding": False,
        "payment_intent_id": "in_1abc",
        "brand": "visa",
        "last4": "4242",
    }
    script = Script(answer(200, envelope(result)))
    topup = make_client(script).create_topup(Decimal("25.00"))
    assert json.loads(script.requests[0].content) == {"amount": 2500}
    assert topup.payment_intent_id == "in_1abc"
    assert "pi_123_secret_456" not in repr(topup)
    assert topup.client_secret is not None
    assert topup.client_secret.get_secret_value() == "pi_123_secret_456"


def test_it_passes_an_optional_payment_method(make_client):
    result = {"client_secret": None, "onboarding": True, "payment_intent_id": "in_2"}
    script = Script(answer(200, envelope(result)))
    make_client(script).create_topup(Decimal("10"), payment_method_id="pm_1")
    assert json.loads(script.requests[0].content) == {"amount": 1000, "payment_method_id": "pm_1"}


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (Decimal("9.99"), r"at least \$10\.00"),
        (Decimal("0"), r"at least \$10\.00"),
        (Decimal("-25"), r"at least \$10\.00"),
        (Decimal("10.005"), "whole cents"),
        (Decimal("NaN"), "Decimal number"),
        (25.0, "Decimal number"),
    ],
)
def test_it_refuses_a_bad_topup_amount_without_a_request(make_client, amount, message):
    script = Script(answer(200, envelope({})))
    with pytest.raises(errors.ValidationError, match=message) as caught:
        make_client(script).create_topup(amount)
    assert caught.value.status_code is None
    assert script.requests == []


def test_it_enforces_auto_topup_minimums_without_a_request(make_client):
    script = Script(answer(200, envelope({"amount": 2000, "threshold": 500})))
    client = make_client(script)
    with pytest.raises(errors.ValidationError, match=r"threshold must be at least \$5\.00"):
        client.set_topup_config(Decimal("20"), Decimal("4.99"))
    with pytest.raises(errors.ValidationError, match=r"amount must be at least \$10\.00"):
        client.set_topup_config(Decimal("9"), Decimal("5"))
    assert script.requests == []
    result = client.set_topup_config(Decimal("20"), Decimal("5"))
    assert json.loads(script.requests[0].content) == {"amount": 2000, "threshold": 500}
    assert result.amount == Decimal("20.00")


def test_it_checks_spending_limit_arguments_without_a_request(make_client):
    script = Script(answer(201, envelope({})))
    client = make_client(script)
    with pytest.raises(errors.ValidationError, match=r"at least \$1\.00"):
        client.set_spending_limit(Decimal("0.99"), "daily", "fixed")
    with pytest.raises(errors.ValidationError, match="duration"):
        client.set_spending_limit(Decimal("5"), "yearly", "fixed")
    with pytest.raises(errors.ValidationError, match="strategy"):
        client.set_spending_limit(Decimal("5"), "daily", "rolling")
    assert script.requests == []
    client.set_spending_limit(Decimal("123.45"), "monthly", "sliding")
    body = json.loads(script.requests[0].content)
    assert body == {"amount": 12345, "duration": "monthly", "strategy": "sliding"}


def test_it_deletes_with_delete(make_client):
    script = Script(answer(200, envelope({})))
    client = make_client(script)
    client.delete_topup_config()
    client.delete_spending_limit()
    assert [(r.method, r.url.path) for r in script.requests] == [
        ("DELETE", PREFIX + "topup/config"),
        ("DELETE", PREFIX + "spending-limit"),
    ]


# ------------------------------------------------------------------ error paths


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, errors.ValidationError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (422, errors.ValidationError),
        (409, errors.BillingStatusError),
    ],
)
def test_it_maps_client_errors_to_classes(make_client, status, error_class):
    script = Script(answer(status, error_body(10000 + status, "nope"), **{"cf-ray": "8f00-LHR"}))
    with pytest.raises(error_class) as caught:
        make_client(script).credit_balance()
    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert caught.value.codes == (10000 + status,)
    assert caught.value.request_id == "8f00-LHR"
    assert len(script.requests) == 1, "4xx other than 408/429 is not retried"


def test_it_reports_cloudflare_error_codes_of_a_400(make_client):
    body = error_body(1004, "amount: must be at least 1000 (cents)")
    with pytest.raises(errors.ValidationError, match="1004: amount: must be at least 1000") as c:
        make_client(Script(answer(400, body))).topup_config()
    assert c.value.errors == (
        errors.CloudflareErrorDetail(1004, "amount: must be at least 1000 (cents)"),
    )


def test_it_retries_a_get_after_429_honouring_retry_after(make_client, sleeps):
    script = Script(
        answer(429, error_body(971, "Please wait"), **{"Retry-After": "2"}),
        answer(200, envelope(credit_balance_json())),
    )
    assert make_client(script).credit_balance().balance == Decimal("6.4019")
    assert len(script.requests) == 2
    assert sleeps == [2.0]


def test_it_gives_up_at_once_when_retry_after_is_past_the_cap(make_client, sleeps):
    script = Script(
        answer(429, error_body(971, "More than 1200 requests"), **{"Retry-After": "300"})
    )
    with pytest.raises(errors.RateLimitedError) as caught:
        make_client(script).credit_balance()
    assert caught.value.retry_after == 300.0
    assert caught.value.codes == (971,)
    assert len(script.requests) == 1
    assert sleeps == []


def test_it_retries_a_get_at_most_twice_on_5xx_with_jittered_backoff(make_client, sleeps):
    script = Script(answer(503, error_body(10001, "unavailable")))
    with pytest.raises(errors.UpstreamError) as caught:
        make_client(script).credit_balance()
    assert caught.value.status_code == 503
    assert len(script.requests) == 3
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_it_recovers_when_a_5xx_is_followed_by_success(make_client):
    script = Script(
        raw(502, b"<html>Bad gateway</html>", "text/html"),
        answer(200, envelope(credit_balance_json())),
    )
    assert make_client(script).credit_balance().has_default_payment_method
    assert len(script.requests) == 2


def test_it_retries_408(make_client):
    script = Script(answer(408, None), answer(200, envelope(credit_balance_json())))
    make_client(script).credit_balance()
    assert len(script.requests) == 2


def test_it_raises_timeout_after_retrying_a_get(make_client):
    script = Script(fail(httpx.ReadTimeout))
    with pytest.raises(errors.BillingTimeout):
        make_client(script).credit_balance()
    assert len(script.requests) == 3


def test_it_raises_connection_error(make_client):
    script = Script(fail(httpx.ConnectError))
    with pytest.raises(errors.BillingConnectionError) as caught:
        make_client(script).spending_limit()
    assert not isinstance(caught.value, errors.BillingTimeout)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "failure", [answer(503, error_body(1, "x")), fail(httpx.ReadTimeout), answer(429, None)]
)
def test_it_never_retries_a_post(make_client, failure, sleeps):
    script = Script(failure, answer(200, envelope({})))
    with pytest.raises(errors.BillingError):
        make_client(script).create_topup(Decimal("25"))
    assert len(script.requests) == 1
    assert sleeps == []


def test_it_never_retries_a_delete(make_client):
    script = Script(answer(500, error_body(1, "x")), answer(200, envelope({})))
    with pytest.raises(errors.UpstreamError):
        make_client(script).delete_topup_config()
    assert len(script.requests) == 1


def test_it_raises_response_error_on_malformed_json(make_client):
    script = Script(raw(200, b'{"success": true, "result": {"balance": 1'))
    with pytest.raises(errors.BillingResponseError, match="not JSON"):
        make_client(script).credit_balance()


@pytest.mark.parametrize("status", [200, 503])
def test_an_answer_nested_too_deep_to_parse_is_a_response_error(make_client, status):
    # Python's JSON parser recurses per level: this depth raises RecursionError, not ValueError.
    script = Script(raw(status, b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(errors.BillingError):
        make_client(script).credit_balance()


def test_it_raises_response_error_on_a_result_of_the_wrong_shape(make_client):
    script = Script(answer(200, envelope({"balance": "lots"})))
    with pytest.raises(errors.BillingResponseError, match="unexpected result shape"):
        make_client(script).credit_balance()


def test_it_raises_response_error_when_the_body_is_not_an_envelope(make_client):
    with pytest.raises(errors.BillingResponseError, match="envelope"):
        make_client(Script(answer(200, [1, 2, 3]))).credit_balance()


def test_it_treats_success_false_at_200_as_an_error(make_client):
    script = Script(answer(200, error_body(7003, "Could not route")))
    with pytest.raises(errors.BillingStatusError, match="success: false") as caught:
        make_client(script).credit_balance()
    assert caught.value.status_code == 200
    assert caught.value.codes == (7003,)


def test_it_never_lets_the_token_reach_messages_reprs_or_logs(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    echo = error_body(10000, f"bad token {TOKEN}")
    client = make_client(Script(answer(401, echo)))
    with pytest.raises(errors.AuthenticationError) as caught:
        client.credit_balance()
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(client)
    assert all(TOKEN not in str(d) for d in caught.value.errors)
    assert TOKEN not in caplog.text
    assert "credit-balance" in caplog.text, "each call is logged"


def test_it_logs_endpoint_status_and_retries(make_client, caplog):
    caplog.set_level(logging.INFO, logger="billing_api.client")
    script = Script(answer(503, None), answer(200, envelope(credit_balance_json())))
    make_client(script).credit_balance()
    assert "GET credit-balance status=200" in caplog.text
    assert "retries=1" in caplog.text


def test_it_quotes_the_account_id_into_the_path(sleeps):
    script = Script(answer(200, envelope(credit_balance_json())))
    http = httpx.Client(transport=httpx.MockTransport(script))
    with BillingClient(BASE, TOKEN, "../../zones", http_client=http) as client:
        client.credit_balance()
    assert "/accounts/..%2F..%2Fzones/ai-gateway" in str(script.requests[0].url)
