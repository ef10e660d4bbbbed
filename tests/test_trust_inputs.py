"""Trust: the audit log is written only for granted accounts, top-ups have a ceiling, and
signed-in answers are never kept by a cache."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from dashboard import roles
from dashboard.models import AuditEvent, Topup

from .conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, make_user
from .test_access import url_for, url_names

HTMX_GET = {"HX-Request": "true"}

# ---------------------------------------------------------------- the forbidden-attempt audit

UNKNOWN_ACCOUNT_ID = "f" * 32


def lead_of(accounts: list[str]) -> Client:
    client = Client()
    client.force_login(make_user("lena", roles.TEAM_LEAD, accounts=accounts))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("account_id", [UNKNOWN_ACCOUNT_ID, ACCOUNT_ID])
def test_it_writes_nothing_for_an_account_not_configured_or_not_granted(account_id, sim):
    client = lead_of([OTHER_ACCOUNT_ID])
    for name in ("topup_create", "topup_check", "auto_topup", "spending_limit", "alerts"):
        response = client.post(reverse(name, args=[account_id]), {"amount": "25"})
        assert response.status_code == 404, name
    assert not AuditEvent.objects.exists()
    assert not [call for call in sim.calls if not call.startswith("GET ")]


@pytest.mark.django_db
def test_it_audits_a_forbidden_write_to_a_granted_account():
    client = lead_of([ACCOUNT_ID])
    response = client.post(reverse("topup_create", args=[ACCOUNT_ID]), {"amount": "25"})
    assert response.status_code == 403
    (event,) = AuditEvent.objects.all()
    assert event.account_id == ACCOUNT_ID and event.outcome == AuditEvent.Outcome.FORBIDDEN


# ---------------------------------------------------------------- a ceiling on top-ups

CREATE = reverse("topup_create", args=[ACCOUNT_ID])


def new_key() -> str:
    return uuid.uuid4().hex


def direct_confirm(client: Client, amount: str) -> Any:
    """One POST with ``confirm``, as a script would send it, skipping the confirmation."""
    return client.post(CREATE, {"amount": amount, "idempotency_key": new_key(), "confirm": "1"})


def send_back(client: Client, page: str, **changes: str) -> Any:
    """Presses "Charge" on ``page``: its hidden fields (with ``changes``) and confirm."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page))
    return client.post(CREATE, {**fields, **changes, "confirm": "1"})


def first_step(client: Client, amount: str, key: str = "") -> str:
    step = client.post(CREATE, {"amount": amount, "idempotency_key": key or new_key()})
    assert step.status_code == 200
    return step.text


@pytest.mark.parametrize("amount", ["9999999999.99", "10000.01", "250000"])
def test_it_refuses_a_top_up_above_the_ceiling_when_limits_do_not_answer(
    finance_client, sim, amount
):
    sim.set_fault("GET topup/limits", "error", status=500)
    response = direct_confirm(finance_client, amount)
    assert response.status_code == 200
    assert "The largest top-up this dashboard allows is $10,000.00." in response.text
    assert f'value="{amount}"' in response.text
    assert sim.calls["POST topup"] == 0
    assert not Topup.objects.exists()


def test_it_takes_the_lower_of_its_ceiling_and_cloudflares(finance_client, sim, settings):
    settings.TOPUP_MAX_AMOUNT = Decimal("200")
    response = direct_confirm(finance_client, "200.01")
    assert "The largest top-up this dashboard allows is $200.00." in response.text
    settings.TOPUP_MAX_AMOUNT = Decimal("5000")
    response = direct_confirm(finance_client, "1000.01")  # Cloudflare's maximum: $1,000
    assert "The largest top-up for this account is $1,000.00." in response.text
    assert sim.calls["POST topup"] == 0


def test_it_tops_up_up_to_the_ceiling_when_limits_do_not_answer(finance_client, sim):
    sim.set_fault("GET topup/limits", "error", status=500)
    page = finance_client.get(reverse("topups", args=[ACCOUNT_ID])).text
    assert "At least $10.00, at most $10,000.00" in page
    response = send_back(finance_client, first_step(finance_client, "10000"))
    assert response.status_code == 302
    assert sim.calls["POST topup"] == 1
    assert Topup.objects.get().amount == Decimal("10000.00")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1E+9", "Enter the amount as plain digits, such as 25 or 25.50, without an exponent."),
        ("1e2", "Enter the amount as plain digits, such as 25 or 25.50, without an exponent."),
        ("NaN", "Enter the amount as a number of dollars, such as 25 or 25.50."),
        ("Infinity", "Enter the amount as a number of dollars, such as 25 or 25.50."),
        ("-Infinity", "Enter the amount as a number of dollars, such as 25 or 25.50."),
        ("٢٥", "Enter the amount as a number of dollars, such as 25 or 25.50."),
        ("25.001", "Enter whole cents: at most 2 digits after the point."),
        ("25.10000", "Enter whole cents: at most 2 digits after the point."),
    ],
)
def test_it_refuses_an_amount_that_is_not_plain_dollars_and_cents(
    finance_client, sim, amount, message
):
    sim.set_fault("GET topup/limits", "error", status=500)
    for response in (
        finance_client.post(CREATE, {"amount": amount, "idempotency_key": new_key()}),
        direct_confirm(finance_client, amount),
    ):
        assert response.status_code == 200
        assert message in response.text
        assert f'value="{amount}"' in response.text
        assert 'name="confirm"' not in response.text
    assert sim.calls["POST topup"] == 0
    assert not Topup.objects.exists()


def test_it_answers_a_confirm_that_skipped_the_confirmation_with_the_confirmation(
    finance_client, sim
):
    response = direct_confirm(finance_client, "25")
    assert response.status_code == 200
    assert "Charge $25.00 to Visa •••• 4242?" in response.text
    assert sim.calls["POST topup"] == 0
    assert not Topup.objects.exists()
    # The confirmation shown is the one that charges, with the same one-time key.
    response = send_back(finance_client, response.text)
    assert response.status_code == 302
    assert sim.calls["POST topup"] == 1


def test_it_charges_only_the_amount_that_was_confirmed(finance_client, sim):
    response = send_back(finance_client, first_step(finance_client, "25"), amount="900")
    assert response.status_code == 200
    assert "Charge $900.00 to Visa •••• 4242?" in response.text
    assert sim.calls["POST topup"] == 0


def test_it_does_not_take_another_users_confirmation(finance_client, admin_client, sim):
    response = send_back(admin_client, first_step(finance_client, "25"))
    assert response.status_code == 200
    assert "Charge $25.00" in response.text
    assert sim.calls["POST topup"] == 0


def test_it_keeps_the_one_time_key_across_the_confirmation(finance_client, sim):
    key = new_key()
    step = first_step(finance_client, "25", key)
    assert f'name="idempotency_key" value="{key}"' in step
    send_back(finance_client, step)
    assert Topup.objects.get().idempotency_key == key


# ---------------------------------------------------------------- no answer kept by a cache

PERSONAS = {
    "nobody": None,
    "lead": roles.TEAM_LEAD,
    "finance": roles.FINANCE,
    "admin": roles.BILLING_ADMIN,
}


def assert_not_kept(response: Any, where: str) -> None:
    directives = {part.strip() for part in response.get("Cache-Control", "").split(",")}
    assert {"private", "no-store"} <= directives, f"{where}: {response.get('Cache-Control')!r}"


@pytest.mark.django_db
@pytest.mark.parametrize("persona", PERSONAS)
def test_it_tells_caches_to_keep_no_signed_in_answer(persona):
    client = Client()
    client.force_login(make_user(persona, PERSONAS[persona]))
    statuses = set()
    urls = [url_for(name, pattern) for name, pattern in url_names()]
    # The same URLs for an account that does not exist: the 404s.
    urls += [url.replace(ACCOUNT_ID, UNKNOWN_ACCOUNT_ID) for url in urls if ACCOUNT_ID in url]
    urls.sort(key=lambda url: url == reverse("logout"))  # last: its POST ends the session
    for url in urls:
        for method, headers in (("GET", {}), ("GET", HTMX_GET), ("POST", {})):
            response = client.generic(method, url, headers=headers)
            statuses.add(response.status_code)
            assert_not_kept(response, f"{persona} {method} {url} {headers}")
    # Pages, redirects, missing things, wrong methods and (but to admins) refusals were seen.
    assert {200, 302, 404, 405} <= statuses
    assert persona == "admin" or 403 in statuses


@pytest.mark.django_db
def test_it_tells_caches_to_keep_no_csv_export_or_fragment(finance_client):
    for name in ("usage_csv", "activity_csv"):
        response = finance_client.get(reverse(name, args=[ACCOUNT_ID]))
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert_not_kept(response, name)
    fragment = finance_client.get(
        reverse("topups", args=[ACCOUNT_ID]), headers={"HX-Target": "topup-history", **HTMX_GET}
    )
    assert fragment.text.lstrip().startswith('<section id="topup-history"')
    assert_not_kept(fragment, "topup-history fragment")


@pytest.mark.django_db
def test_it_keeps_stricter_directives_of_public_answers(client):
    healthz = client.get(reverse("healthz"))
    assert_not_kept(healthz, "healthz")
    assert "must-revalidate" in healthz["Cache-Control"]
    assert_not_kept(client.get(reverse("login")), "login page")
