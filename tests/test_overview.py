"""The overview page and its balance card, against the simulator."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.html import escape

from billing_api.simulator import HOSTILE_HTML, Simulator
from dashboard import billing
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, SIMULATOR_NOW

HTMX = {"HX-Request": "true", "HX-Target": "balance-card"}


def account(sim: Simulator):
    """The simulator's mutable state of the account the dashboard shows."""
    return sim.account(ACCOUNT_ID)


def balance_text(html: str) -> str:
    match = re.search(r'<p class="balance[^"]*">([^<]*)</p>', html)
    assert match, "no balance on the page"
    return match.group(1)


def test_it_redirects_home_to_the_default_account(lead_client):
    response = lead_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == OVERVIEW_URL


def test_it_shows_the_balance_the_card_and_the_auto_topup_rule(lead_client, sim):
    state = account(sim)
    state.balance = 123456.0  # cents
    state.topup_config.threshold = 500
    state.topup_config.amount = 2000
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert balance_text(response.text) == "$1,234.56"
    assert "Visa •••• 4242" in response.text
    assert "When the balance falls below $5.00, add $20.00." in response.text
    assert "Production" in response.text


def test_it_names_the_time_zone(lead_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    response = lead_client.get(OVERVIEW_URL)
    assert "Times are shown in Europe/Berlin." in response.text


def test_it_shows_a_negative_balance_with_a_minus_sign(lead_client, sim):
    account(sim).balance = -320.0
    response = lead_client.get(OVERVIEW_URL)
    assert balance_text(response.text) == "\u2212$3.20"


def test_it_says_when_there_is_no_payment_method(lead_client, sim):
    account(sim).payment_method = None
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert "No payment method on file" in response.text
    assert "••••" not in response.text


def test_it_says_auto_topup_is_off(lead_client, sim):
    state = account(sim)
    state.topup_config.amount = None
    state.topup_config.threshold = None
    response = lead_client.get(OVERVIEW_URL)
    assert "Auto top-up is off." in response.text
    assert "When the balance falls below" not in response.text


def test_it_warns_when_the_auto_topup_failed(lead_client, sim):
    config = account(sim).topup_config
    config.error = "Your card was declined."
    config.disabled_reason = "card_declined"
    failed_at = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    config.last_failed_at_ms = int(failed_at.timestamp() * 1000)
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert "The last automatic top-up failed on" in response.text
    assert failed_at.strftime("%-d %b %Y, %H:%M UTC") in response.text
    assert "Your card was declined." in response.text
    assert "Auto top-up was stopped because the card was declined." in response.text
    assert "Stopped. The rule was: when the balance falls below" in response.text


def test_it_shows_an_unknown_stop_reason_as_cloudflare_sent_it(lead_client, sim):
    account(sim).topup_config.disabled_reason = "risk_review"
    response = lead_client.get(OVERVIEW_URL)
    assert escape("Auto top-up was stopped. Cloudflare's reason: risk_review") in response.text


def test_it_answers_an_htmx_request_with_the_card_alone(lead_client):
    response = lead_client.get(OVERVIEW_URL, headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="balance-card"')
    assert "<html" not in response.text
    assert "Credit balance" in response.text
    assert "HX-Request" in response["Vary"]


def test_it_answers_the_partial_query_with_the_card_alone(lead_client):
    response = lead_client.get(OVERVIEW_URL, {"partial": "balance-card"})
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="balance-card"')
    assert "<html" not in response.text


def test_it_answers_a_normal_request_with_the_full_page(lead_client):
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert "<html" in response.text
    assert '<section id="balance-card"' in response.text
    assert "HX-Request" in response["Vary"]
    assert "Log out" in response.text


def test_it_refuses_an_unknown_partial(lead_client):
    response = lead_client.get(OVERVIEW_URL, {"partial": "nope"})
    assert response.status_code == 400


def test_it_refuses_a_post(lead_client):
    assert lead_client.post(OVERVIEW_URL).status_code == 405


def test_it_does_not_know_an_account_that_is_not_configured(lead_client):
    response = lead_client.get("/accounts/" + "f" * 32 + "/")
    assert response.status_code == 404


def test_it_does_not_read_a_malformed_account_id(lead_client):
    assert lead_client.get("/accounts/not-an-account/").status_code == 404


@pytest.mark.parametrize(
    ("fault", "params", "message"),
    [
        ("error", {"status": 500}, "Cloudflare's billing service is having trouble."),
        ("error", {"status": 503}, "Cloudflare's billing service is having trouble."),
        ("hang", {"seconds": 0}, "took too long to answer"),
        ("malformed", {}, "sent an answer we could not read"),
        ("unsuccessful", {}, "answered with an error"),
        ("rate_limit", {"retry_after": 300}, "limiting how often we may ask"),
    ],
)
def test_it_states_an_upstream_failure_in_plain_words(lead_client, sim, fault, params, message):
    sim.set_fault("GET credit-balance", fault, **params)
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert escape(message) in response.text
    assert "Traceback" not in response.text
    assert 'class="balance' not in response.text


def test_it_says_when_cloudflare_refuses_the_token(lead_client, settings):
    billing.use_simulator(Simulator(seed=0, token="a-different-token", clock=lambda: SIMULATOR_NOW))
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert escape("did not accept the dashboard's API token") in response.text


def test_it_logs_an_upstream_failure_without_the_token(lead_client, sim, caplog):
    from billing_api.simulator import DEFAULT_TOKEN

    sim.set_fault("GET credit-balance", "error", status=500)
    lead_client.get(OVERVIEW_URL)
    failures = [r for r in caplog.records if r.name == "dashboard.upstream"]
    assert failures and "UpstreamError" in failures[0].getMessage()
    assert all(DEFAULT_TOKEN not in r.getMessage() for r in caplog.records)


def test_it_serves_the_cached_balance_without_asking_again(lead_client, sim):
    account(sim).balance = 1000.0
    lead_client.get(OVERVIEW_URL)
    account(sim).balance = 2000.0
    response = lead_client.get(OVERVIEW_URL)
    assert balance_text(response.text) == "$10.00"


def test_it_shows_the_last_good_balance_as_of_its_time_when_cloudflare_fails(
    lead_client, sim, settings
):
    settings.BILLING_CACHE_SECONDS = 0  # every request asks Cloudflare again
    account(sim).balance = 4200.0
    first = lead_client.get(OVERVIEW_URL)
    assert balance_text(first.text) == "$42.00"
    sim.set_fault("GET credit-balance", "error", status=502)
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert escape("Cloudflare's billing service is having trouble.") in response.text
    assert "Showing the last figures received, as of" in response.text
    assert balance_text(response.text) == "$42.00"


def test_it_recovers_when_cloudflare_answers_again(lead_client, sim, settings):
    settings.BILLING_CACHE_SECONDS = 0
    settings.BILLING_ERROR_CACHE_SECONDS = 0
    sim.set_fault("GET credit-balance", "error", status=500)
    assert "having trouble" in lead_client.get(OVERVIEW_URL).text
    sim.clear_faults()
    response = lead_client.get(OVERVIEW_URL)
    assert "having trouble" not in response.text
    assert 'class="balance' in response.text


def test_it_does_not_ask_a_failing_cloudflare_again_for_every_view(lead_client, sim, settings):
    settings.BILLING_CACHE_SECONDS = 0
    sim.set_fault("GET credit-balance", "error", status=503)
    for _ in range(3):
        assert "having trouble" in lead_client.get(OVERVIEW_URL).text
    assert sim.calls["GET credit-balance"] == 1


def test_it_escapes_hostile_strings_from_cloudflare(lead_client, sim):
    state = account(sim)
    state.topup_config.error = '<script>alert("card")</script>'
    state.topup_config.disabled_reason = '<img src=x onerror="alert(1)">'
    state.payment_method.brand = "<b>visa</b>"
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert '<script>alert("card")</script>' not in response.text
    assert "&lt;script&gt;alert(&quot;card&quot;)&lt;/script&gt;" in response.text
    assert "<img src=x" not in response.text
    assert "&lt;b&gt;visa&lt;/b&gt; •••• 4242" in response.text


def test_it_escapes_the_simulators_hostile_fault(lead_client, sim):
    sim.set_fault("GET credit-balance", "hostile")
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert response.text.count("<script") == response.text.count('<script src="/static/')
    assert "<img" not in response.text
    assert all(hostile not in response.text for hostile in HOSTILE_HTML)
    assert any(escape(hostile) in response.text for hostile in HOSTILE_HTML)


def test_it_sends_a_strict_content_security_policy(lead_client):
    response = lead_client.get(OVERVIEW_URL)
    policy = response["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy
    assert " style=" not in response.text
    assert "<script>" not in response.text
