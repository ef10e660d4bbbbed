"""The auto top-up rule page: show, check as you type, save, delete, and every way it fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from billing_api.simulator import Simulator
from dashboard.models import AuditEvent, RefusedChange
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, SIMULATOR_NOW

URL = f"/accounts/{ACCOUNT_ID}/auto-top-up/"
DELETE_URL = f"/accounts/{ACCOUNT_ID}/auto-top-up/delete/"
NOW = datetime.fromtimestamp(SIMULATOR_NOW, UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}
Outcome = AuditEvent.Outcome

pytestmark = pytest.mark.usefixtures("frozen_clock")


def writes(sim: Simulator) -> int:
    calls = sim.calls
    return calls["POST topup/config"] + calls["DELETE topup/config"]


def events() -> list[AuditEvent]:
    return list(AuditEvent.objects.order_by("id"))


def save(client: Client, threshold: str, amount: str, **extra: Any) -> Any:
    return client.post(URL, {"threshold": threshold, "amount": amount}, **extra)


# ---------------------------------------------------------------- showing the rule


def test_it_shows_the_rule_as_a_sentence_prefilled(admin_client, sim):
    config = sim.account(ACCOUNT_ID).topup_config
    config.threshold, config.amount = 1500, 5000
    response = admin_client.get(URL)
    assert response.status_code == 200
    text = response.text
    assert "When the balance falls below $15.00, add $50.00." in text
    assert 'name="threshold" value="15.00"' in text
    assert 'name="amount" value="50.00"' in text
    assert "Threshold, in dollars" in text and "Amount to add, in dollars" in text
    assert "Turn auto top-up off…" in text


def test_it_offers_to_turn_it_on_when_off(admin_client, sim):
    config = sim.account(OTHER_ACCOUNT_ID).topup_config
    assert config.amount is None
    response = admin_client.get(f"/accounts/{OTHER_ACCOUNT_ID}/auto-top-up/")
    assert "Auto top-up is off." in response.text
    assert "Turn auto top-up on" in response.text
    assert "There is no card on file" in response.text
    assert "Turn auto top-up off…" not in response.text


def test_it_links_the_page_for_admins_only(admin_client, lead):
    overview = admin_client.get(f"/accounts/{ACCOUNT_ID}/").text
    assert overview.count(f'href="{URL}"') == 2  # the nav, and the balance card
    lead_client = Client()
    lead_client.force_login(lead)
    assert f'href="{URL}"' not in lead_client.get(f"/accounts/{ACCOUNT_ID}/").text


# ---------------------------------------------------------------- saving


def test_it_saves_the_rule_and_redirects(admin_client, sim):
    before = sim.account(ACCOUNT_ID).topup_config
    old = {"threshold": f"{before.threshold / 100:.2f}", "amount": f"{before.amount / 100:.2f}"}
    response = save(admin_client, "7.50", "$1,000")
    assert response.status_code == 302
    assert response["Location"] == URL
    config = sim.account(ACCOUNT_ID).topup_config
    assert (config.threshold, config.amount) == (750, 100_000)
    page = admin_client.get(URL).text
    assert "Auto top-up rule saved. When the balance falls below $7.50, add $1,000.00." in page
    # The cached balance was dropped: the page shows the new rule at once.
    assert "<strong>When the balance falls below $7.50, add $1,000.00.</strong>" in page
    (event,) = events()
    assert event.outcome == Outcome.ACCEPTED
    assert event.action == AuditEvent.Action.AUTO_TOPUP_SET
    assert event.before == old
    assert event.after == {"threshold": "7.50", "amount": "1000.00"}
    assert writes(sim) == 1


def test_it_saves_over_htmx_with_the_summary_out_of_band(admin_client, sim):
    response = save(admin_client, "6", "25", **HTMX)
    assert response.status_code == 200
    assert response["Vary"] == "HX-Request" or "HX-Request" in response["Vary"]
    text = response.text
    assert "<html" not in text
    assert text.startswith('\n<section id="auto-topup-form"') or 'id="auto-topup-form"' in text
    assert "Auto top-up rule saved." in text
    assert 'id="auto-topup-summary" class="rule-summary" hx-swap-oob="true"' in text
    assert "<strong>When the balance falls below $6.00, add $25.00.</strong>" in text
    assert (sim.account(ACCOUNT_ID).topup_config.threshold, 2500) == (600, 2500)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("threshold", "amount", "message"),
    [
        ("", "20", "Enter the threshold in dollars, such as 25 or 1,000.50."),
        ("10", "", "Enter the amount in dollars, such as 25 or 1,000.50."),
        ("-5", "20", "The threshold must be between $5.00 and $10,000.00"),
        ("abc", "20", "Enter the threshold as a number of dollars, such as 25 or 1,000.50."),
        ("10", "NaN", "Enter the amount as a number of dollars, such as 25 or 1,000.50."),
        (
            "5.001",
            "20",
            "Enter the threshold in whole cents, with at most two digits after the point.",
        ),
        ("10", "99999999999", "The amount must be between $10.00 and $1,000.00."),
        ("10", "1e9", "without an exponent."),
        (
            "10",
            "1e2",
            "Enter the amount as plain digits, such as 25 or 1,000.50, without an exponent.",
        ),
        ("10", "٢٠", "Enter the amount as a number of dollars, such as 25 or 1,000.50."),
        ("Infinity", "20", "Enter the threshold as a number of dollars, such as 25 or 1,000.50."),
        (
            "4.99",
            "20",
            "The threshold must be between $5.00 and $10,000.00: $5.00 is Cloudflare’s minimum.",
        ),
        (
            "10",
            "9.99",
            "The amount must be between $10.00 and $1,000.00: $10.00 is Cloudflare’s minimum.",
        ),
    ],
)
def test_it_refuses_bad_input_keeping_it(admin_client, sim, threshold, amount, message):
    response = save(admin_client, threshold, amount)
    assert response.status_code == 200
    assert message in response.text
    assert f'name="threshold" value="{threshold}"' in response.text or threshold == ""
    assert 'aria-invalid="true"' in response.text
    assert writes(sim) == 0
    assert events() == []


def test_it_keeps_the_amount_under_the_dashboards_top_up_ceiling(admin_client, sim, settings):
    """The rule's amount is a top-up made again and again: TOPUP_MAX_AMOUNT bounds it too."""
    settings.TOPUP_MAX_AMOUNT = Decimal("500")
    response = save(admin_client, "10", "500.01")
    assert "The amount must be between $10.00 and $500.00." in response.text
    assert writes(sim) == 0
    save(admin_client, "10", "500")
    assert sim.account(ACCOUNT_ID).topup_config.amount == 50000


def test_it_refuses_bad_input_over_htmx_as_the_form_partial(admin_client, sim):
    response = save(admin_client, "1", "20", **HTMX)
    assert response.status_code == 200
    assert "<html" not in response.text
    assert "The threshold must be between $5.00 and $10,000.00" in response.text
    assert writes(sim) == 0


def test_it_checks_as_you_type_without_saving(admin_client, sim):
    response = admin_client.post(
        URL, {"threshold": "3", "amount": "20", "intent": "validate"}, **HTMX
    )
    assert response.status_code == 200
    assert response.text.strip().startswith('<div id="auto-topup-feedback"')
    assert "The threshold must be between $5.00 and $10,000.00" in response.text
    ok = admin_client.post(URL, {"threshold": "10", "amount": "20", "intent": "validate"}, **HTMX)
    assert "this fires about every" in ok.text or "would not fire" in ok.text
    assert writes(sim) == 0
    assert events() == []


def test_it_wires_the_inputs_for_live_checks(admin_client):
    text = admin_client.get(URL).text
    assert 'hx-trigger="keyup changed delay:400ms, change"' in text
    assert "hx-vals='{&quot;intent&quot;: &quot;validate&quot;}'" in text or (
        'hx-vals="{&quot;intent&quot;: &quot;validate&quot;}"' in text
    )


def test_it_needs_the_csrf_token(admin, sim):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    response = save(client, "10", "20")
    assert response.status_code == 403
    assert writes(sim) == 0


@pytest.mark.parametrize("persona", ["lead", "finance"])
def test_it_refuses_and_audits_those_without_permission(client, request, sim, persona):
    user = request.getfixturevalue(persona)
    client.force_login(user)
    assert save(client, "10", "20").status_code == 403
    assert client.post(DELETE_URL).status_code == 403
    assert writes(sim) == 0
    assert [(e.action, e.outcome) for e in events()] == [
        (AuditEvent.Action.AUTO_TOPUP_SET, Outcome.FORBIDDEN),
        (AuditEvent.Action.AUTO_TOPUP_DELETE, Outcome.FORBIDDEN),
    ]


# ---------------------------------------------------------------- upstream failures


@pytest.mark.parametrize(
    ("fault", "params", "said", "outcome"),
    [
        ("error", {"status": 502}, "Cloudflare’s billing service is having trouble", "failed"),
        ("rate_limit", {"retry_after": 60}, "Cloudflare is limiting how often", "failed"),
        ("hang", {}, "Cloudflare did not confirm the change; check before trying again.", "failed"),
        ("unsuccessful", {}, "answered with an error. Cloudflare said:", "failed"),
    ],
)
def test_it_says_what_happened_upstream(admin_client, sim, fault, params, said, outcome):
    sim.set_fault("POST topup/config", fault, **params)
    response = save(admin_client, "10", "20")
    assert response.status_code == 200
    assert said.replace("’", "&#x27;") in response.text or said in response.text
    assert 'name="threshold" value="10"' in response.text
    assert sim.calls["POST topup/config"] == 1
    (event,) = events()
    assert event.outcome == outcome
    assert event.after == {"threshold": "10.00", "amount": "20.00"}
    assert not RefusedChange.objects.exists()


# ---------------------------------------------------------------- Cloudflare's 403 today


def test_it_explains_and_remembers_cloudflares_refusal(admin_client, current_mode, db):
    response = save(admin_client, "12", "40")
    assert response.status_code == 200
    text = response.text
    assert "Cloudflare refused this on" in text and "for ada" in text
    assert "Dashboard sessions only" in text
    assert "only from its own dashboard" in text
    assert f"https://dash.cloudflare.com/{ACCOUNT_ID}/ai/ai-gateway" in text
    assert 'name="threshold" value="12"' in text and 'name="amount" value="40"' in text
    assert current_mode.calls["POST topup/config"] == 1
    refusal = RefusedChange.objects.get(account_id=ACCOUNT_ID, kind=RefusedChange.Kind.AUTO_TOPUP)
    assert refusal.refused_by == "ada" and refusal.upstream_status == 403
    (event,) = events()
    assert event.outcome == Outcome.REFUSED
    assert event.upstream_status == 403 and event.upstream_codes
    assert event.request_id


def test_the_next_admin_sees_the_refusal_before_the_form(admin_client, current_mode):
    save(admin_client, "12", "40")
    page = admin_client.get(URL).text
    assert page.index("Cloudflare refused this on") < page.index('name="threshold"')
    assert "<fieldset disabled>" in page
    retry = admin_client.post(URL, {"intent": "retry", "threshold": "12", "amount": "40"})
    assert retry.status_code == 200
    assert 'name="threshold" value="12"' in retry.text
    assert "<fieldset disabled>" not in retry.text
    # Choosing to try again forgets nothing: only Cloudflare's acceptance does.
    assert RefusedChange.objects.exists()
    assert "<fieldset disabled>" in admin_client.get(URL).text


def test_it_refuses_the_delete_too_and_remembers(admin_client, current_mode):
    response = admin_client.post(DELETE_URL)
    assert response.status_code == 200
    assert "only from its own dashboard" in response.text
    assert RefusedChange.objects.filter(kind=RefusedChange.Kind.AUTO_TOPUP).exists()
    assert current_mode.account(ACCOUNT_ID).topup_config.amount is not None
    (event,) = events()
    assert (event.action, event.outcome) == (AuditEvent.Action.AUTO_TOPUP_DELETE, "refused")


def test_a_later_success_clears_the_refusal(admin_client, sim, admin):
    RefusedChange.objects.create(
        account_id=ACCOUNT_ID, kind=RefusedChange.Kind.AUTO_TOPUP, refused_by="ada", message="no"
    )
    assert save(admin_client, "10", "20").status_code == 302
    assert not RefusedChange.objects.exists()


# ---------------------------------------------------------------- delete


def test_it_deletes_after_a_confirmation(admin_client, sim):
    confirm = admin_client.get(DELETE_URL)
    assert confirm.status_code == 200
    assert "Turn auto top-up off?" in confirm.text
    assert writes(sim) == 0
    response = admin_client.post(DELETE_URL)
    assert response.status_code == 302 and response["Location"] == URL
    assert sim.account(ACCOUNT_ID).topup_config.amount is None
    page = admin_client.get(URL).text
    assert "Auto top-up is off. The balance will not be refilled." in page
    (event,) = events()
    assert (event.action, event.outcome) == (AuditEvent.Action.AUTO_TOPUP_DELETE, "accepted")
    assert event.before is not None and event.after is None


# ---------------------------------------------------------------- failed auto top-up, preview


def test_it_offers_to_save_a_failed_rule_again(admin_client, sim):
    config = sim.account(ACCOUNT_ID).topup_config
    config.error = "Your card was declined."
    config.disabled_reason = "card_declined"
    failed_at = NOW.replace(microsecond=0) - timedelta(hours=3)
    config.last_failed_at_ms = int(failed_at.timestamp() * 1000)
    threshold, amount = config.threshold, config.amount
    page = admin_client.get(URL).text
    assert "The last auto top-up failed on" in page
    assert failed_at.strftime("%-d %b %Y, %H:%M") in page
    assert "Your card was declined." in page
    assert "Save the rule again" in page
    assert f'name="threshold" value="{threshold / 100:.2f}"' in page
    response = save(admin_client, f"{threshold / 100:.2f}", f"{amount / 100:.2f}")
    assert response.status_code == 302
    assert sim.account(ACCOUNT_ID).topup_config.disabled_reason is None
    assert "The last auto top-up failed" not in admin_client.get(URL).text


def test_it_previews_the_rule_against_the_burn_rate(admin_client, sim):
    balance = sim.account(ACCOUNT_ID).balance / 100
    response = admin_client.post(
        URL, {"threshold": "5", "amount": "100", "intent": "validate"}, **HTMX
    )
    assert "At the 7-day spend of $" in response.text
    assert "this fires about every" in response.text
    assert "next top-up around" in response.text
    due = admin_client.post(
        URL,
        {"threshold": f"{balance + 50:.2f}", "amount": "100", "intent": "validate"},
        **HTMX,
    )
    assert "so a top-up would be due at once" in due.text


def test_a_refusal_says_what_to_do_before_cloudflares_words(admin_client, current_mode):
    plain = "Cloudflare accepts changes to the auto top-up rule only from its own dashboard"
    for page in (save(admin_client, "12", "40").text, admin_client.get(URL).text):
        assert page.index(plain) < page.index("Dashboard sessions only")
        assert page.index("dash.cloudflare.com") < page.index("Dashboard sessions only")
        assert page.index("Dashboard sessions only") < page.index('name="threshold"')
