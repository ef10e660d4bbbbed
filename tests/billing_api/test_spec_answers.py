"""Every answer Cloudflare's spec allows is read, or refused with a BillingResponseError.

The spec (``data/cloudflare-ai-gateway-billing.openapi.json``, a copy of the
reference) types envelope codes and pagination as ``number``; metadata is read
tolerantly, money and times strictly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from billing_api import errors, models
from billing_api.client import BillingClient
from tests.billing_api.conftest import (
    ACCOUNT,
    BASE,
    TOKEN,
    credit_balance_json,
    envelope,
    error_body,
    pagination,
)

SPEC_NAME = "cloudflare-ai-gateway-billing.openapi.json"


def invoice_history_json(**overrides: Any) -> dict[str, Any]:
    invoice = {"amount_due": 2500, "amount_paid": 2500, "amount_remaining": 0, "currency": "usd"}
    return {"invoices": [invoice], "pagination": pagination(**overrides)}


def limits_json(**overrides: Any) -> dict[str, Any]:
    return {"min_cents": 1000, "max_cents": 1000000, "currency": "USD", **overrides}


def answer_with(body: Any, status: int = 200) -> BillingClient:
    """A client whose every request is answered with ``body`` (a JSON text or a value).

    The transport is in-process (no socket), so the client needs no closing.
    """
    content = (body if isinstance(body, str) else json.dumps(body)).encode()
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=content))
    http = httpx.Client(transport=transport)
    return BillingClient(BASE, TOKEN, ACCOUNT, http_client=http, sleep=lambda seconds: None)


# ------------------------------------------------------------------ the named examples


def test_it_reads_a_message_code_that_is_not_a_whole_number():
    body = envelope(credit_balance_json(), messages=[{"code": 1000.5, "message": "note"}])
    balance = answer_with(body).credit_balance()
    assert balance.balance == Decimal("6.4019")


def test_it_keeps_the_message_of_an_error_whose_code_is_not_a_whole_number():
    body = error_body(1000.5, "Bad amount")
    with pytest.raises(errors.ValidationError) as caught:
        answer_with(body, status=400).create_topup(Decimal("10.00"))
    assert caught.value.codes == (1000,)
    assert "Bad amount" in str(caught.value)


def test_it_reads_a_page_written_as_a_decimal_number():
    body = envelope(
        invoice_history_json(page=1.0),
        result_info={"has_more": False, "page": 1.0, "per_page": 20.0, "total_count": 1.0},
    )
    history = answer_with(body).invoice_history()
    assert history.pagination.page == 1
    assert history.pagination.total_count == 1


def test_it_reads_fractional_pagination_as_its_whole_part():
    body = envelope(invoice_history_json(page=2.5, per_page=20.5, total_count=7.9))
    pagination = answer_with(body).invoice_history().pagination
    assert (pagination.page, pagination.per_page, pagination.total_count) == (2, 20, 7)


def test_it_reads_fractional_result_info_in_the_envelope():
    info = {"has_more": True, "page": 1.5, "per_page": 0.5, "total_count": 1e300}
    body = envelope(credit_balance_json(), result_info=info)
    assert answer_with(body).credit_balance().balance == Decimal("6.4019")


def test_it_reads_a_fractional_attempt_count():
    body = invoice_history_json()
    body["invoices"][0]["attempt_count"] = 1.5
    assert answer_with(envelope(body)).invoice_history().invoices[0].attempt_count == 1


def test_it_reads_huge_whole_codes_and_counts_without_failing_to_show_them():
    # A number with thousands of digits would make str() fail later, on a page.
    huge = "1" + "0" * 5000
    text = json.dumps(envelope(invoice_history_json(), messages=[{"code": 0, "message": "m"}]))
    text = text.replace('"total_count": 1', f'"total_count": {huge}')
    text = text.replace('"code": 0', f'"code": {huge}')
    history = answer_with(text).invoice_history()
    assert str(history.pagination.total_count)


# ------------------------------------------------------------------ refused, clearly


def test_it_refuses_a_time_that_is_no_calendar_date():
    body = {"history": [{"id": "b", "aggregated_value": 1, "start_time": 1e300, "end_time": 1}]}
    with pytest.raises(errors.BillingResponseError, match="history.0.start_time.*no calendar date"):
        answer_with(envelope(body)).usage_history("day")


@pytest.mark.parametrize(
    ("wire", "said"),
    [
        ("1e1000000", "cannot be real"),
        ("1234567890.12345678901234567890123", "more digits than can be held exactly"),
    ],
)
def test_it_refuses_an_amount_it_cannot_hold_exactly(wire, said):
    text = json.dumps(envelope(credit_balance_json(balance=0)))
    text = text.replace('"balance": 0', f'"balance": {wire}')
    with pytest.raises(errors.BillingResponseError, match=f"balance .*{said}"):
        answer_with(text).credit_balance()


@pytest.mark.parametrize(
    "overrides",
    [
        {"min_cents": -1},
        {"max_cents": 10**40},
        {"min_cents": 5000, "max_cents": 4000},
    ],
)
def test_it_refuses_topup_limits_that_cannot_be_a_ceiling(overrides):
    with pytest.raises(errors.BillingResponseError, match="topup/limits"):
        answer_with(envelope(limits_json(**overrides))).topup_limits()


def test_it_reads_topup_limits_written_as_whole_decimal_numbers():
    limits = answer_with(envelope(limits_json(min_cents=1000.0, max_cents=1e6))).topup_limits()
    assert (limits.minimum, limits.maximum) == (Decimal("10.00"), Decimal("10000.00"))


def test_it_ignores_envelope_metadata_it_does_not_read():
    # messages and result_info are not used: a shape the spec does not allow is no failure.
    body = envelope(credit_balance_json(), messages="see docs", result_info=[1, 2])
    assert answer_with(body).credit_balance().balance == Decimal("6.4019")


def test_it_ignores_a_python_field_name_sent_as_an_unknown_field():
    # Cloudflare names it disabledReason; disabled_reason is an unknown field, of any type.
    config = {"amount": None, "threshold": None, "disabled_reason": 5}
    assert answer_with(envelope(config)).topup_config().disabled_reason is None


# ------------------------------------------------------------------ answers drawn from the spec

SPEC = json.loads((Path(__file__).parent / "data" / SPEC_NAME).read_text())
BILLING = "/accounts/{account_id}/ai-gateway/billing/"

UNKNOWN_FIELD = {"type": ["null", "boolean", "number", "string"]}
# In Cloudflare's spec but left out of the reference copy; written from the reference notes:
# "result: {min_cents: integer, max_cents: integer, currency: string}, all required".
TOPUP_LIMITS_RESULT = {
    "type": "object",
    "properties": {
        "min_cents": {"type": "integer"},
        "max_cents": {"type": "integer"},
        "currency": {"type": "string"},
    },
    "required": ["min_cents", "max_cents", "currency"],
}

# The short list of answers that the spec allows but the dashboard cannot use, refused with a
# BillingResponseError: money of 10**20 cents or more (no real balance; Decimal arithmetic on
# it is no longer exact to the cent), a time outside the years 1 to 9999 (margin: a day either
# side, for float rounding), and topup/limits that are not 0 <= min <= max <= $10 billion.
MONEY_FIELDS = {
    "balance",
    "amount",
    "threshold",
    "amount_due",
    "amount_paid",
    "amount_remaining",
    "aggregated_value",
}
TIME_FIELDS = {
    "start_time",
    "end_time",
    "created",
    "period_start",
    "period_end",
    "start",
    "end",
    "lastFailedAt",
}
MONEY_REFUSED_FROM = 10**20
FIRST_SECOND = -62135596800 + 86400
LAST_SECOND = 253402300799 - 86400
LIMIT_REFUSED_ABOVE = 10**12


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0 to self-contained JSON Schema: $refs inlined, ``nullable`` as a null type."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return json_schema(target)
    schema = {
        key: json_schema(value)
        for key, value in node.items()
        if key not in ("nullable", "description", "example") and not key.startswith("x-")
    }
    # Bounded, so that a run takes seconds: lists of at most three, and unknown fields (which
    # the spec allows everywhere) only where answer_schema() adds them.
    if schema.get("type") == "array":
        schema["maxItems"] = 3
    if schema.get("type") == "object":
        schema["additionalProperties"] = False
    if node.get("nullable") and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if node.get("nullable") and "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def with_unknown_fields(schema: Any) -> Any:
    """The envelope and its result may carry fields the spec does not name, of any scalar."""
    if schema.get("type") == "object":
        schema["additionalProperties"] = UNKNOWN_FIELD
    return schema


def answer_schema(path: str, method: str, status: str = "200", result: Any = None) -> Any:
    response = SPEC["paths"][BILLING + path][method]["responses"][status]
    schema = json_schema(response["content"]["application/json"]["schema"])
    if result is not None:
        schema["properties"]["result"] = result
    with_unknown_fields(schema["properties"]["result"])
    return with_unknown_fields(schema)


Call = Callable[[BillingClient], Any]

ENDPOINTS: dict[str, tuple[Any, Call, type | None]] = {
    "GET credit-balance": (
        answer_schema("credit-balance", "get"),
        lambda client: client.credit_balance(),
        models.CreditBalance,
    ),
    "GET usage-history": (
        answer_schema("usage-history", "get"),
        lambda client: client.usage_history("day"),
        models.UsageHistory,
    ),
    "GET invoice-history": (
        answer_schema("invoice-history", "get"),
        lambda client: client.invoice_history("all"),
        models.InvoiceHistory,
    ),
    "GET invoice-preview": (
        answer_schema("invoice-preview", "get"),
        lambda client: client.invoice_preview(),
        models.InvoicePreview,
    ),
    "POST topup": (
        answer_schema("topup", "post"),
        lambda client: client.create_topup(Decimal("10.00")),
        models.Topup,
    ),
    "POST topup/status": (
        answer_schema("topup/status", "post"),
        lambda client: client.topup_status("in_1abc"),
        models.TopupStatus,
    ),
    "GET topup/config": (
        answer_schema("topup/config", "get"),
        lambda client: client.topup_config(),
        models.TopupConfig,
    ),
    "POST topup/config": (
        answer_schema("topup/config", "post"),
        lambda client: client.set_topup_config(Decimal("20.00"), Decimal("5.00")),
        models.TopupConfigSet,
    ),
    "DELETE topup/config": (
        answer_schema("topup/config", "delete"),
        lambda client: client.delete_topup_config(),
        None,
    ),
    "GET spending-limit": (
        answer_schema("spending-limit", "get"),
        lambda client: client.spending_limit(),
        models.SpendingLimit,
    ),
    "POST spending-limit": (
        answer_schema("spending-limit", "post", "201"),
        lambda client: client.set_spending_limit(Decimal("100.00"), "monthly", "fixed"),
        None,
    ),
    "DELETE spending-limit": (
        answer_schema("spending-limit", "delete"),
        lambda client: client.delete_spending_limit(),
        None,
    ),
    "GET topup/limits": (
        answer_schema("credit-balance", "get", result=TOPUP_LIMITS_RESULT),
        lambda client: client.topup_limits(),
        models.TopupLimits,
    ),
}
STRATEGIES = {name: from_schema(schema) for name, (schema, _, _) in ENDPOINTS.items()}

BOUNDED = settings(
    max_examples=50,
    deadline=None,
    database=None,
    # hypothesis-jsonschema filters its own draws (nested nullable objects): on some seeds
    # more than the health check allows, which says nothing of the adapter.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


def numbers_at(node: Any, fields: set[str]) -> Iterator[float | int]:
    """Every number under one of ``fields``, at any depth."""
    if isinstance(node, list):
        for item in node:
            yield from numbers_at(item, fields)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in fields and isinstance(value, int | float) and not isinstance(value, bool):
                yield value
            yield from numbers_at(value, fields)


def is_calendar_date(value: float) -> bool:
    # The documented reading: 10**11 or more is Unix milliseconds, less is Unix seconds.
    seconds = value / 1000 if abs(value) >= 10**11 else value
    return FIRST_SECOND < seconds < LAST_SECOND


def unusable_money_or_time(result: Any) -> bool:
    huge_money = any(abs(v) >= MONEY_REFUSED_FROM for v in numbers_at(result, MONEY_FIELDS))
    no_date = any(not is_calendar_date(v) for v in numbers_at(result, TIME_FIELDS))
    return huge_money or no_date


def usable_limits(result: dict[str, Any]) -> bool:
    low, high = result["min_cents"], result["max_cents"]
    return bool(0 <= low <= high <= LIMIT_REFUSED_ABOVE)


@pytest.mark.parametrize("name", ENDPOINTS)
@BOUNDED
@given(data=st.data())
def test_it_reads_every_answer_the_spec_allows(name, data):
    _, call, model = ENDPOINTS[name]
    body = data.draw(STRATEGIES[name], label="answer")
    result = body["result"]
    limits = name == "GET topup/limits"
    try:
        value = call(answer_with(body, status=201 if name == "POST spending-limit" else 200))
    except errors.BillingResponseError as err:
        unusable = not usable_limits(result) if limits else unusable_money_or_time(result)
        assert unusable, f"refused a usable answer: {err}"
        assert name in str(err)
        return
    if limits:
        assert usable_limits(result), "believed topup/limits that cannot bound a payment"
    assert value is None if model is None else isinstance(value, model)
    if isinstance(value, models.CreditBalance):
        # Cents to dollars, to the digit: the wire text, not a float, is what is read.
        assert value.balance == Decimal(json.dumps(result["balance"])) / 100


ERROR_STATUSES = {
    400: errors.ValidationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
}


@BOUNDED
@given(
    status=st.sampled_from(sorted(ERROR_STATUSES)),
    body=from_schema(answer_schema("credit-balance", "get", "400")),
)
def test_it_reports_every_error_answer_the_spec_allows_with_its_messages(status, body):
    with pytest.raises(ERROR_STATUSES[status]) as caught:
        answer_with(body, status=status).credit_balance()
    assert [detail.message for detail in caught.value.errors] == [
        error["message"] for error in body["errors"]
    ]
