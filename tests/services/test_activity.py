"""Activity people can read: a typo is not an event, and every detail is said in words.

Which invalid submissions are kept: a one-off top-up refused at its confirmation step (the
person pressed "Charge"), and a spending limit refused after its "I understand" box was
ticked. A form sent back for a typo, before any confirmation, is not an event.
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.models import User
from django.test import Client

from billing_api import errors
from dashboard.models import AuditEvent
from dashboard.services import activity as service
from dashboard.services import audit
from tests.conftest import ACCOUNT_ID
from tests.views.test_topups import confirm

ACTIVITY = f"/accounts/{ACCOUNT_ID}/activity/"
#: What a page must never show a person: form machinery, Python names, JSON.
MACHINERY = re.compile(
    r"__all__|[A-Z][a-z]+(?:[A-Z][a-z]+)*(?:Error|Timeout)\b|\[\"|\[\d|dashboard\."
)


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def detail_cells(html: str) -> list[str]:
    cells = re.findall(r'<td data-label="Detail" class="detail">(.*?)</td>', html, re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for cell in cells]


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("auto-top-up/", {"threshold": "ten", "amount": "20"}),
        ("spending-limit/", {"amount": "1.005", "duration": "weekly", "strategy": "fixed"}),
        ("alerts/", {"kind": "nonsense"}),
        ("topups/new/", {"amount": "abc", "idempotency_key": "a" * 32}),
    ],
)
def test_it_records_no_event_for_a_typo(admin_client, sim, url, data):
    response = admin_client.post(f"/accounts/{ACCOUNT_ID}/{url}", data)
    assert response.status_code == 200
    assert not AuditEvent.objects.exists()


def test_it_records_a_top_up_refused_at_its_confirmation(finance_client, sim):
    confirm(finance_client, "9.99")
    (event,) = AuditEvent.objects.all()
    assert event.outcome == audit.Outcome.INVALID
    assert "$10.00" in event.detail


def test_it_records_a_confirmed_spending_limit_that_is_refused(admin_client, sim):
    data = {"amount": "1.005", "duration": "weekly", "strategy": "fixed", "confirm": "on"}
    admin_client.post(f"/accounts/{ACCOUNT_ID}/spending-limit/", data)
    (event,) = AuditEvent.objects.all()
    assert event.outcome == audit.Outcome.INVALID
    assert "__all__" not in event.detail and "amount:" not in event.detail


def test_it_records_what_cloudflare_said_without_class_names(admin):
    error = errors.PermissionDeniedError("POST topup answered HTTP 403", status_code=403)
    event = audit.record(admin, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.REFUSED, error=error)
    assert event.detail == error.user_message


@pytest.mark.parametrize(
    ("detail", "shown"),
    [
        # Rows written before this change stay as they are: they are read in words.
        (
            "__all__: Give at least one email address or webhook URL.",
            "Give at least one email address or webhook URL.",
        ),
        (
            "repeat_hours: Between 0 and 720.; kind: Select a valid choice.",
            "Repeat hours: Between 0 and 720. Kind: Select a valid choice.",
        ),
        (
            "PermissionDeniedError: Cloudflare refused this request.",
            "Cloudflare refused this request.",
        ),
        (
            "BillingTimeout: Cloudflare's billing service took too long to answer.",
            "Cloudflare's billing service took too long to answer.",
        ),
        ("missing permission dashboard.create_topup", "Their role does not allow this change."),
        ("amount: ['Enter a number.']", "Amount: Enter a number."),
        (
            "Cloudflare refused the values sent. Cloudflare said: “amount: too low; try 10”",
            "Cloudflare refused the values sent. Cloudflare said: “amount: too low; try 10”",
        ),
        ("", "—"),
    ],
)
def test_it_shows_every_detail_in_words(finance_client, finance, detail, shown):
    audit.record(finance, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.INVALID, detail=detail)
    page = finance_client.get(ACTIVITY).text
    assert detail_cells(page) == [shown]
    assert service.detail_text(detail) == (shown if detail else "")


def test_it_lists_values_in_words_not_json(finance_client, finance):
    audit.record(
        finance,
        ACCOUNT_ID,
        audit.Action.ALERT_RULE_SET,
        audit.Outcome.ACCEPTED,
        after={"emails": ["ada@example.com", "bob@example.com"], "codes": []},
    )
    page = finance_client.get(ACTIVITY).text
    assert "ada@example.com, bob@example.com" in unescape(page)
    table = page.split("<tbody>")[1].split("</tbody>")[0]
    assert not MACHINERY.search(unescape(table)), MACHINERY.search(unescape(table))


def test_it_calls_the_payment_intent_a_payment_reference(finance_client, finance):
    after = {"amount": "25.00", "payment_intent_id": "in_1abc", "status": "pending"}
    audit.record(finance, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.ACCEPTED, after=after)
    page = unescape(finance_client.get(ACTIVITY).text)
    assert "Payment reference:" in page and "Payment intent id" not in page


def test_it_exports_the_detail_in_words(finance_client, finance):
    error = errors.UpstreamError("POST topup answered HTTP 502", status_code=502)
    audit.record(
        finance,
        ACCOUNT_ID,
        audit.Action.TOPUP,
        audit.Outcome.FAILED,
        detail=f"UpstreamError: {error.user_message}",
    )
    exported = finance_client.get(f"/accounts/{ACCOUNT_ID}/activity.csv").content.decode()
    assert "UpstreamError" not in exported and error.user_message in exported
