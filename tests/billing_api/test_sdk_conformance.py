"""Cloudflare's own Python SDK, unchanged, against the simulator's HTTP server.

If one of these fails, the simulator is unfaithful: fix the simulator, never the SDK call.
"""

from __future__ import annotations

import cloudflare
import pytest

from billing_api.simulator import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, Simulator
from billing_api.simulator.server import start_server
from tests.billing_api.conftest import START, read_banner, run_module

SDK_ENV = ("CLOUDFLARE_API_KEY", "CLOUDFLARE_EMAIL", "CLOUDFLARE_BASE_URL", "CLOUDFLARE_API_TOKEN")
ACCOUNT = DEFAULT_ACCOUNT_ID


@pytest.fixture(autouse=True)
def _no_sdk_environment(monkeypatch):
    # The SDK prefers these over its arguments; a developer's shell must not leak in.
    for name in SDK_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["default", "current"])
def mode(request) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def server(mode, clock):
    sim = Simulator(seed=11, mode=mode, clock=clock, topup_settle_seconds=5)
    running = start_server(sim)
    yield running
    running.stop()


def sdk(base_url: str, token: str = DEFAULT_TOKEN) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=token, base_url=base_url, max_retries=0, timeout=10)


@pytest.fixture
def client(server):
    with sdk(server.base_url) as c:
        yield c


def test_it_serves_every_read_endpoint_to_the_sdk(client):
    billing = client.ai_gateway.billing
    balance = billing.credit_balance(account_id=ACCOUNT)
    assert balance.balance > 0
    assert balance.has_default_payment_method is True
    assert balance.payment_method is not None and balance.payment_method.last4 == "4242"
    assert balance.topup_config.amount is not None

    end_ms = START * 1000
    usage = billing.usage_history(
        account_id=ACCOUNT,
        value_grouping_window="hour",
        start_time=end_ms - 6 * 3_600_000,
        end_time=end_ms,
    )
    assert len(usage.history) == 6
    assert usage.history[0].id.startswith("mtrusgsum_")
    days = billing.usage_history(account_id=ACCOUNT, value_grouping_window="day")
    assert len(days.history) == 31

    invoices = billing.invoice_history(account_id=ACCOUNT, type="manual")
    assert invoices.invoices and all(i.invoice_origin == "manual" for i in invoices.invoices)
    assert invoices.pagination.per_page == 20
    assert billing.invoice_history(account_id=ACCOUNT).pagination.total_count >= 25

    preview = billing.invoice_preview(account_id=ACCOUNT)
    assert preview.status == "draft"
    assert preview.amount_due == sum(line.amount for line in preview.invoice_lines)

    config = billing.topup.config.get(account_id=ACCOUNT)
    assert config.threshold is not None and config.error is None
    limit = billing.spending_limit.get(account_id=ACCOUNT)
    assert limit.enabled is True and limit.config.duration == "monthly"


def test_it_tops_up_through_the_sdk_until_completed(client, clock):
    topup = client.ai_gateway.billing.topup
    created = topup.create(account_id=ACCOUNT, amount=5000)
    assert created.client_secret is not None and created.client_secret.startswith("pi_")
    assert (created.brand, created.last4) == ("visa", "4242")
    status = topup.status(account_id=ACCOUNT, payment_intent_id=created.payment_intent_id)
    assert status.status == "pending"
    clock.advance(6)
    status = topup.status(account_id=ACCOUNT, payment_intent_id=created.payment_intent_id)
    assert status.status == "completed"
    newest = client.ai_gateway.billing.invoice_history(account_id=ACCOUNT, type="manual")
    assert newest.invoices[0].id == created.payment_intent_id


def test_it_applies_or_refuses_the_restricted_writes_per_mode(client, mode):
    billing = client.ai_gateway.billing
    if mode == "default":
        created = billing.topup.config.create(account_id=ACCOUNT, amount=2000, threshold=700)
        assert (created.amount, created.threshold) == (2000, 700)
        assert billing.topup.config.get(account_id=ACCOUNT).amount == 2000
        assert billing.topup.config.delete(account_id=ACCOUNT) == {}
        assert billing.topup.config.get(account_id=ACCOUNT).amount is None
        with pytest.deprecated_call():
            limit = billing.spending_limit.create(
                account_id=ACCOUNT, amount=12345, duration="weekly", strategy="sliding"
            )
        assert limit == {"amount": 12345, "duration": "weekly", "strategy": "sliding"}
        assert billing.spending_limit.get(account_id=ACCOUNT).config.amount == 12345
    else:
        with pytest.raises(cloudflare.PermissionDeniedError, match="Dashboard sessions only"):
            billing.topup.config.create(account_id=ACCOUNT, amount=2000, threshold=700)
        with pytest.raises(cloudflare.PermissionDeniedError, match="Dashboard sessions only"):
            billing.topup.config.delete(account_id=ACCOUNT)
        with (
            pytest.deprecated_call(),
            pytest.raises(cloudflare.PermissionDeniedError, match="spend-limits") as refused,
        ):
            billing.spending_limit.create(
                account_id=ACCOUNT, amount=12345, duration="weekly", strategy="sliding"
            )
        assert refused.value.status_code == 403
    # Removing a limit works in both modes, and twice.
    assert billing.spending_limit.delete(account_id=ACCOUNT) == {}
    assert billing.spending_limit.delete(account_id=ACCOUNT) == {}
    assert billing.spending_limit.get(account_id=ACCOUNT).enabled is False


def test_it_raises_the_sdks_authentication_error_for_a_bad_token(server):
    with (
        sdk(server.base_url, token="not-the-token") as wrong,
        pytest.raises(cloudflare.AuthenticationError) as refused,
    ):
        wrong.ai_gateway.billing.credit_balance(account_id=ACCOUNT)
    assert refused.value.status_code == 401


def test_it_raises_the_sdks_bad_request_error_below_the_topup_minimum(client):
    with pytest.raises(cloudflare.BadRequestError, match="at least 1000") as refused:
        client.ai_gateway.billing.topup.create(account_id=ACCOUNT, amount=999)
    assert refused.value.status_code == 400


def test_it_raises_the_sdks_not_found_error_for_an_unknown_topup(client):
    with pytest.raises(cloudflare.NotFoundError):
        client.ai_gateway.billing.topup.status(account_id=ACCOUNT, payment_intent_id="in_nope")


def test_it_serves_the_sdk_from_the_module_server():
    with run_module(["--port", "0", "--mode", "current", "--quiet"]) as lines:
        base_url = read_banner(lines)["base URL"]
        with sdk(base_url) as client:
            balance = client.ai_gateway.billing.credit_balance(account_id=ACCOUNT)
            assert balance.payment_method is not None
            with pytest.raises(cloudflare.PermissionDeniedError):
                client.ai_gateway.billing.topup.config.delete(account_id=ACCOUNT)
