"""Every answer Cloudflare's spec allows is read, or refused with a BillingResponseError.

The spec (``tests/data/cloudflare-ai-gateway-billing.openapi.json``, a copy of the
reference) types envelope codes and pagination as ``number``; metadata is read
tolerantly, money and times strictly.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from billing_api import errors
from billing_api.client import BillingClient

TOKEN = "tok_Sup3rS3cret-value"
ACCOUNT = "0123456789abcdef0123456789abcdef"
BASE = "https://api.example.test/client/v4"


def envelope(result: Any, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    body.update(overrides)
    return body


def credit_balance_json(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "balance": 640.19,
        "has_default_payment_method": True,
        "payment_method": {"brand": "visa", "last4": "4242"},
        "topup_config": {"amount": 2000, "threshold": 500},
    }
    body.update(overrides)
    return body


def invoice_history_json(**pagination: Any) -> dict[str, Any]:
    invoice = {"amount_due": 2500, "amount_paid": 2500, "amount_remaining": 0, "currency": "usd"}
    page = {"has_more": False, "page": 1, "per_page": 20, "total_count": 1}
    page.update(pagination)
    return {"invoices": [invoice], "pagination": page}


def limits_json(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"min_cents": 1000, "max_cents": 1000000, "currency": "USD"}
    body.update(overrides)
    return body


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
    body = {"success": False, "errors": [{"code": 1000.5, "message": "Bad amount"}], "result": None}
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
    with pytest.raises(errors.BillingResponseError, match="history.0.start_time"):
        answer_with(envelope(body)).usage_history("day")


def test_it_refuses_an_amount_too_large_to_hold_exactly():
    text = json.dumps(envelope(credit_balance_json(balance=0))).replace(
        '"balance": 0', '"balance": 1e1000000'
    )
    with pytest.raises(errors.BillingResponseError, match="balance"):
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


def test_it_ignores_a_python_field_name_sent_as_an_unknown_field():
    # Cloudflare names it disabledReason; disabled_reason is an unknown field, of any type.
    config = {"amount": None, "threshold": None, "disabled_reason": 5}
    assert answer_with(envelope(config)).topup_config().disabled_reason is None
