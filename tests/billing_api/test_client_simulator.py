"""BillingClient against the simulator's in-process front: all 13 calls and the faults."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from billing_api import errors
from billing_api.client import BillingClient
from billing_api.simulator import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, HOSTILE_URL, Simulator
from tests.billing_api.conftest import START, Clock

BASE = "https://api.cloudflare.com/client/v4"
STARTED = datetime.fromtimestamp(START, tz=UTC)


@pytest.fixture
def simulator(clock: Clock) -> Simulator:
    return Simulator(seed=7, clock=clock, topup_settle_seconds=5.0)


@pytest.fixture
def client(simulator: Simulator) -> Iterator[BillingClient]:
    http = httpx.Client(transport=simulator.transport())
    with BillingClient(
        BASE, DEFAULT_TOKEN, DEFAULT_ACCOUNT_ID, http_client=http, sleep=lambda _: None
    ) as made:
        yield made
    http.close()


def test_it_reads_every_endpoint(client):
    balance = client.credit_balance()
    assert balance.payment_method is not None and balance.payment_method.last4 == "4242"
    days = client.usage_history("day", STARTED - timedelta(days=7), STARTED)
    assert 7 <= len(days.history) <= 8
    assert all(bucket.aggregated_value >= 0 for bucket in days.history)
    hours = client.usage_history("hour", STARTED - timedelta(hours=24), STARTED)
    assert 23 <= len(hours.history) <= 25
    assert sum(b.aggregated_value for b in hours.history) > 0
    invoices = client.invoice_history("all")
    assert invoices.pagination.page == 1 and invoices.invoices
    assert client.invoice_history("all", page=2).pagination.page == 2
    assert client.invoice_preview().invoice_lines
    assert client.topup_config().amount == balance.topup_config.amount
    limits = client.topup_limits()
    assert limits.minimum == Decimal("10.00")
    assert client.spending_limit().enabled in (True, False)


def test_it_tops_up_and_sees_the_balance_rise(client, clock):
    before = client.credit_balance().balance
    topup = client.create_topup(Decimal("25.00"))
    assert client.topup_status(topup.payment_intent_id).status == "pending"
    clock.advance(6)
    assert client.topup_status(topup.payment_intent_id).status == "completed"
    after = client.credit_balance().balance
    # The clock moved six seconds: no hour of usage ended in between.
    assert after - before == Decimal("25.00")
    manual = client.invoice_history("manual").invoices
    assert any(invoice.id == topup.payment_intent_id for invoice in manual)


def test_it_sets_and_deletes_the_rules(client):
    assert client.set_topup_config(Decimal("20"), Decimal("5")).threshold == Decimal("5.00")
    client.delete_topup_config()
    assert not client.topup_config().is_set
    client.set_spending_limit(Decimal("50"), "monthly", "fixed")
    limit = client.spending_limit()
    assert limit.enabled and limit.config.amount == Decimal("50.00")
    client.delete_spending_limit()
    assert not client.spending_limit().enabled


def test_it_gets_a_403_for_deprecated_writes_in_current_mode(clock):
    simulator = Simulator(seed=7, clock=clock, mode="current")
    http = httpx.Client(transport=simulator.transport())
    with BillingClient(BASE, DEFAULT_TOKEN, DEFAULT_ACCOUNT_ID, http_client=http) as client:
        with pytest.raises(errors.PermissionDeniedError, match="always responds 403"):
            client.set_spending_limit(Decimal("50"), "monthly", "fixed")
        with pytest.raises(errors.PermissionDeniedError, match="Dashboard sessions only"):
            client.set_topup_config(Decimal("20"), Decimal("5"))
        with pytest.raises(errors.PermissionDeniedError):
            client.delete_topup_config()
        client.delete_spending_limit()
    http.close()


def test_it_gets_cloudflare_validation_errors_past_its_own_checks(client, simulator):
    # Above the account's maximum from topup/limits: only Cloudflare knows it.
    with pytest.raises(errors.ValidationError) as caught:
        client.create_topup(Decimal("1000000"))
    assert caught.value.status_code == 400
    assert caught.value.codes


def test_it_refuses_a_bad_token_and_an_unknown_account(simulator):
    http = httpx.Client(transport=simulator.transport())
    with pytest.raises(errors.AuthenticationError):
        BillingClient(BASE, "wrong", DEFAULT_ACCOUNT_ID, http_client=http).credit_balance()
    with pytest.raises(errors.NotFoundError):
        BillingClient(BASE, DEFAULT_TOKEN, "f" * 32, http_client=http).credit_balance()
    http.close()


@pytest.mark.parametrize(
    ("kind", "params", "error_class"),
    [
        ("error", {"status": 502}, errors.UpstreamError),
        ("rate_limit", {"retry_after": 600}, errors.RateLimitedError),
        ("hang", {}, errors.BillingTimeout),
        ("malformed", {}, errors.BillingResponseError),
        ("unsuccessful", {}, errors.BillingStatusError),
    ],
)
def test_it_turns_each_fault_into_its_error(client, simulator, kind, params, error_class):
    simulator.set_fault("GET credit-balance", kind, **params)
    with pytest.raises(error_class):
        client.credit_balance()


def test_it_retries_a_429_then_succeeds(client, simulator):
    simulator.set_fault("GET credit-balance", "rate_limit", retry_after=1, times=1)
    client.credit_balance()
    assert simulator.calls["GET credit-balance"] == 2


def test_it_gives_up_after_two_retries(client, simulator):
    simulator.set_fault("GET invoice-preview", "error", status=503)
    with pytest.raises(errors.UpstreamError):
        client.invoice_preview()
    assert simulator.calls["GET invoice-preview"] == 3


def test_it_sends_a_failing_topup_once(client, simulator):
    simulator.set_fault("POST topup", "error", status=500)
    with pytest.raises(errors.UpstreamError):
        client.create_topup(Decimal("25"))
    assert simulator.calls["POST topup"] == 1
    assert simulator.account(DEFAULT_ACCOUNT_ID).topups == {}


def test_it_passes_hostile_strings_through_as_data(client, simulator):
    simulator.set_fault("GET invoice-history", "hostile")
    invoices = client.invoice_history().invoices
    assert any(invoice.invoice_pdf == HOSTILE_URL for invoice in invoices)
