"""The Alerts page: Billing admins add, change and delete rules; bad input changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dashboard.models import (
    AlertDelivery,
    AlertDeliveryAttempt,
    AlertFiring,
    AlertRule,
    AuditEvent,
)
from tests.conftest import ACCOUNT_ID

URL = f"/accounts/{ACCOUNT_ID}/alerts/"
SECRET_HOOK = "https://hooks.slack.com/services/T000/B000/very-secret-token"


def form(**values: str) -> dict[str, str]:
    data = {
        "kind": "balance_below",
        "amount": "50",
        "days": "",
        "factor": "",
        "emails": "finance@example.com",
        "webhooks": "",
        "webhook_format": "json",
        "repeat_hours": "24",
        "enabled": "on",
    }
    return data | values


def test_a_billing_admin_adds_an_alert(admin_client):
    response = admin_client.post(URL, form(webhooks=SECRET_HOOK, webhook_format="slack"))
    assert response.status_code == 302 and response["Location"] == URL
    rule = AlertRule.objects.get()
    assert (rule.kind, rule.amount, rule.account_id) == ("balance_below", Decimal(50), ACCOUNT_ID)
    assert rule.webhook_list() == [SECRET_HOOK] and rule.created_by == "ada"
    event = AuditEvent.objects.get(action="alert_rule.set")
    assert event.outcome == "accepted" and event.after is not None
    assert event.after["condition"] == "Balance below $50.00"
    assert event.after["webhooks"] == ["https://hooks.slack.com/…"]
    page = admin_client.get(URL).text
    assert "Balance below $50.00" in page and "finance@example.com" in page
    assert "https://hooks.slack.com/…" in page
    assert "very-secret-token" not in page


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"amount": "-5"}, "amount", "Enter an amount above $0.00."),
        ({"amount": ""}, "amount", "Enter the amount in dollars, above $0.00."),
        ({"amount": "abc"}, "amount", "as a number of dollars"),
        ({"kind": "auto_topup_cap", "amount": "0"}, "amount", "Enter an amount above $0.00."),
        ({"kind": "runway_below", "days": "0"}, "days", "at least 1"),
        ({"kind": "runway_below", "days": ""}, "days", "at least 1"),
        ({"kind": "spend_spike", "factor": "1"}, "factor", "Enter K above 1"),
        ({"kind": "spend_spike", "factor": "0.5"}, "factor", "Enter K above 1"),
        ({"emails": "not-an-address"}, "emails", "is not an email address"),
        ({"webhooks": "http://example.com/hook"}, "webhooks", "must use https://"),
        ({"webhooks": "https://u:p@example.com/x"}, "webhooks", "no user name or password"),
        ({"webhooks": "https://100.64.0.1/x"}, "webhooks", "private or internal address"),
        ({"webhooks": "https://192.0.0.1/x"}, "webhooks", "private or internal address"),
        ({"emails": "", "webhooks": ""}, None, "at least one email address or webhook URL"),
        ({"repeat_hours": "9999"}, "repeat_hours", "Between 0"),
        ({"kind": "nonsense"}, "kind", "Select a valid choice"),
    ],
)
def test_nonsense_is_refused_with_a_clear_message_and_changes_nothing(
    admin_client, values, field, message
):
    response = admin_client.post(URL, form(**values))
    assert response.status_code == 200
    assert message in response.text
    assert AlertRule.objects.count() == 0
    # A typo is not an attempt: the Activity page does not list it.
    assert not AuditEvent.objects.exists()


def test_an_invalid_htmx_post_gets_the_form_back_with_its_input(admin_client):
    response = admin_client.post(
        URL,
        form(kind="spend_spike", factor="1", emails="ops@example.com"),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "<html" not in response.text and 'id="alert-rule-form"' in response.text
    assert "ops@example.com" in response.text


def test_a_valid_htmx_post_reloads_the_page(admin_client):
    response = admin_client.post(URL, form(), headers={"HX-Request": "true"})
    assert response.status_code == 204 and response["HX-Redirect"] == URL


def test_a_value_for_another_kind_is_not_kept(admin_client):
    admin_client.post(URL, form(kind="runway_below", days="7", amount="50", factor="3"))
    rule = AlertRule.objects.get()
    assert (rule.days, rule.amount, rule.factor) == (7, None, None)


def test_a_rule_is_changed_and_deleted_with_an_audit_trail(admin_client):
    admin_client.post(URL, form())
    rule = AlertRule.objects.get()
    edit = f"{URL}{rule.pk}/"
    assert admin_client.get(edit).status_code == 200
    response = admin_client.post(edit, form(amount="75", enabled=""))
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.amount == 75 and not rule.enabled
    changed = AuditEvent.objects.filter(action="alert_rule.set").first()
    assert changed is not None and changed.before is not None and changed.after is not None
    assert changed.before["condition"] == "Balance below $50.00"
    assert changed.after["condition"] == "Balance below $75.00"
    assert admin_client.get(f"{edit}delete/").status_code == 200
    assert admin_client.post(f"{edit}delete/").status_code == 302
    assert not AlertRule.objects.exists()
    deleted = AuditEvent.objects.get(action="alert_rule.delete")
    assert deleted.before is not None and deleted.before["condition"] == "Balance below $75.00"


def test_another_accounts_rule_is_not_found(admin_client):
    other = AlertRule.objects.create(
        account_id="5a1b2c3d4e5f60718293a4b5c6d7e8f9", kind="balance_below", created_by="x"
    )
    assert admin_client.get(f"{URL}{other.pk}/").status_code == 404
    assert admin_client.post(f"{URL}{other.pk}/delete/").status_code == 404
    assert AlertRule.objects.filter(pk=other.pk).exists()


def test_the_history_shows_each_delivery(admin_client):
    rule = AlertRule.objects.create(
        account_id=ACCOUNT_ID,
        kind="balance_below",
        amount=50,
        emails="finance@example.com",
        webhooks=SECRET_HOOK,
        created_by="ada",
        active=True,
        last_fired_at=datetime(2026, 6, 10, 12, tzinfo=UTC),
    )
    firing = AlertFiring.objects.create(
        rule=rule, episode=1, subject="Balance below $50.00 (Production)", message="Low."
    )
    AlertDelivery.objects.create(
        firing=firing, channel="email", target="finance@example.com", status="sent"
    )
    retrying = AlertDelivery.objects.create(
        firing=firing, channel="webhook", target=SECRET_HOOK, attempts=2, last_error="HTTP 500"
    )
    for minute, error in ((1, "No answer in time"), (2, "HTTP 500")):
        AlertDeliveryAttempt.objects.create(
            delivery=retrying,
            at=datetime(2026, 6, 10, 12, minute, tzinfo=UTC),
            ok=False,
            error=error,
        )
    page = admin_client.get(URL).text
    assert "Balance below $50.00 (Production)" in page
    assert "Firing" in page
    assert "Sent" in page and "Retrying" in page and "HTTP 500" in page
    assert "Attempts:" in page and "10 Jun 12:01</time> No answer in time" in page
    assert "very-secret-token" not in page


@pytest.mark.parametrize("persona", ["lead_client", "finance_client"])
def test_only_billing_admins_may_see_or_change_alerts(request, persona):
    client = request.getfixturevalue(persona)
    assert client.get(URL).status_code == 403
    assert client.post(URL, form()).status_code == 403
    assert not AlertRule.objects.exists()
    assert "/alerts/" not in client.get(f"/accounts/{ACCOUNT_ID}/").text
