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
from dashboard.models import AlertRule, AuditEvent, Topup
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, make_user
from tests.views.test_access import url_for, url_names

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
        response = client.post(reverse(f"dashboard:{name}", args=[account_id]), {"amount": "25"})
        assert response.status_code == 404, name
    assert not AuditEvent.objects.exists()
    assert not [call for call in sim.calls if not call.startswith("GET ")]


@pytest.mark.django_db
def test_it_audits_a_forbidden_write_to_a_granted_account():
    client = lead_of([ACCOUNT_ID])
    response = client.post(reverse("dashboard:topup_create", args=[ACCOUNT_ID]), {"amount": "25"})
    assert response.status_code == 403
    (event,) = AuditEvent.objects.all()
    assert event.account_id == ACCOUNT_ID and event.outcome == AuditEvent.Outcome.FORBIDDEN


# ---------------------------------------------------------------- a ceiling on top-ups

CREATE = reverse("dashboard:topup_create", args=[ACCOUNT_ID])


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
    assert (
        "The amount must be between $10.00 and $10,000.00: $10,000.00 is the largest top-up "
        "this dashboard allows." in response.text
    )
    assert f'value="{amount}"' in response.text
    assert sim.calls["POST topup"] == 0
    assert not Topup.objects.exists()


def test_it_takes_the_lower_of_its_ceiling_and_cloudflares(finance_client, sim, settings):
    settings.TOPUP_MAX_AMOUNT = Decimal("200")
    response = direct_confirm(finance_client, "200.01")
    assert "$200.00 is the largest top-up this dashboard allows." in response.text
    settings.TOPUP_MAX_AMOUNT = Decimal("5000")
    response = direct_confirm(finance_client, "1000.01")  # Cloudflare's maximum: $1,000
    assert "$1,000.00 is the largest top-up for this account." in response.text
    assert sim.calls["POST topup"] == 0


def test_it_tops_up_up_to_the_ceiling_when_limits_do_not_answer(finance_client, sim):
    sim.set_fault("GET topup/limits", "error", status=500)
    page = finance_client.get(reverse("dashboard:topups", args=[ACCOUNT_ID])).text
    assert "At least $10.00, at most $10,000.00" in page
    response = send_back(finance_client, first_step(finance_client, "10000"))
    assert response.status_code == 302
    assert sim.calls["POST topup"] == 1
    assert Topup.objects.get().amount == Decimal("10000.00")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1E+9", "Enter the amount as plain digits, such as 25 or 1,000.50, without an exponent."),
        ("1e2", "Enter the amount as plain digits, such as 25 or 1,000.50, without an exponent."),
        ("NaN", "Enter the amount as a number of dollars, such as 25 or 1,000.50."),
        ("Infinity", "Enter the amount as a number of dollars, such as 25 or 1,000.50."),
        ("-Infinity", "Enter the amount as a number of dollars, such as 25 or 1,000.50."),
        ("٢٥", "Enter the amount as a number of dollars, such as 25 or 1,000.50."),
        ("25.001", "Enter the amount in whole cents, with at most two digits after the point."),
        ("25.10000", "Enter the amount in whole cents, with at most two digits after the point."),
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
        response = finance_client.get(reverse(f"dashboard:{name}", args=[ACCOUNT_ID]))
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert_not_kept(response, name)
    fragment = finance_client.get(
        reverse("dashboard:topups", args=[ACCOUNT_ID]),
        headers={"HX-Target": "topup-history", **HTMX_GET},
    )
    assert fragment.text.lstrip().startswith('<section id="topup-history"')
    assert_not_kept(fragment, "topup-history fragment")


@pytest.mark.django_db
def test_it_keeps_stricter_directives_of_public_answers(client):
    healthz = client.get(reverse("healthz"))
    assert_not_kept(healthz, "healthz")
    assert "must-revalidate" in healthz["Cache-Control"]
    assert_not_kept(client.get(reverse("login")), "login page")


# ---------------------------------------------------------------- money typed as people type it

AUTO_TOPUP = reverse("dashboard:auto_topup", args=[ACCOUNT_ID])
LIMIT = reverse("dashboard:spending_limit", args=[ACCOUNT_ID])
ALERTS = reverse("dashboard:alerts", args=[ACCOUNT_ID])


def topup_amount(client: Client, value: str) -> Any:
    return client.post(CREATE, {"amount": value, "idempotency_key": new_key()})


def rule_threshold(client: Client, value: str) -> Any:
    return client.post(AUTO_TOPUP, {"threshold": value, "amount": "20"})


def rule_amount(client: Client, value: str) -> Any:
    return client.post(AUTO_TOPUP, {"threshold": "10", "amount": value})


def limit_amount(client: Client, value: str) -> Any:
    # Confirmed: a small monthly limit may already be used up, which is not the point here.
    data = {"amount": value, "duration": "monthly", "strategy": "fixed", "confirm": "on"}
    return client.post(LIMIT, data)


def alert_amount(client: Client, value: str) -> Any:
    data = {"kind": "balance_below", "amount": value, "emails": "finance@example.com"}
    return client.post(ALERTS, data | {"webhook_format": "json", "repeat_hours": "24"})


#: Each money field: how to send it, and what it is called in its messages.
MONEY_FIELDS = {
    "top-up amount": (topup_amount, "amount"),
    "auto top-up threshold": (rule_threshold, "threshold"),
    "auto top-up amount": (rule_amount, "amount"),
    "spending limit": (limit_amount, "limit"),
    "alert amount": (alert_amount, "amount"),
}


def stored(field: str, sim: Any, response: Any) -> Decimal | None:
    """The dollars the field's page took: sent to Cloudflare, kept, or put to confirmation."""
    account = sim.account(ACCOUNT_ID)
    if field == "top-up amount":
        if 'name="confirm"' not in response.text:
            return None
        found = re.search(r'name="amount" value="([^"]*)"', response.text)
        return Decimal(found[1]) if found else None
    cents = {
        "auto top-up threshold": account.topup_config.threshold,
        "auto top-up amount": account.topup_config.amount,
        "spending limit": account.spending_limit.amount,
    }
    if field in cents:
        return Decimal(cents[field]) / 100
    rule = AlertRule.objects.first()
    return None if rule is None else rule.amount


def writes(sim: Any) -> int:
    return sum(count for call, count in sim.calls.items() if not call.startswith("GET "))


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize(
    ("typed", "dollars"),
    [
        ("$25", "25.00"),
        ("1,000", "1000.00"),
        ("1,000.50", "1000.50"),
        (" $ 1,000.5 ", "1000.50"),
        ("25", "25.00"),
    ],
)
def test_it_takes_money_as_people_type_it(admin_client, sim, field, typed, dollars):
    # topup/limits not answering: the dashboard's ceiling ($10,000) is the top-up's maximum.
    sim.set_fault("GET topup/limits", "error", status=500)
    send, _ = MONEY_FIELDS[field]
    response = send(admin_client, typed)
    assert response.status_code in (200, 302), response.text
    assert "field-error" not in response.text and 'aria-invalid="true"' not in response.text
    assert stored(field, sim, response) == Decimal(dollars)


#: Refused in every money field, with the message, {noun} being the field's name.
NOT_MONEY = [
    ("1e3", "Enter the {noun} as plain digits, such as 25 or 1,000.50, without an exponent."),
    ("$1E+9", "Enter the {noun} as plain digits, such as 25 or 1,000.50, without an exponent."),
    ("NaN", "Enter the {noun} as a number of dollars, such as 25 or 1,000.50."),
    ("Infinity", "Enter the {noun} as a number of dollars, such as 25 or 1,000.50."),
    ("-Infinity", "Enter the {noun} as a number of dollars, such as 25 or 1,000.50."),
    ("٢٥", "Enter the {noun} as a number of dollars, such as 25 or 1,000.50."),
    ("twenty", "Enter the {noun} as a number of dollars, such as 25 or 1,000.50."),
    ("$$25", "Enter the {noun} as a number of dollars, such as 25 or 1,000.50."),
    ("1 000", "Enter the {noun} as a number of dollars, such as 25 or 1,000.50."),
    (
        "1,00",
        "Enter the {noun} with commas only between thousands and a point before the cents, "
        "such as 1,000.50.",
    ),
    (
        "10,0000",
        "Enter the {noun} with commas only between thousands and a point before the cents, "
        "such as 1,000.50.",
    ),
    ("25.001", "Enter the {noun} in whole cents, with at most two digits after the point."),
    ("25.10000", "Enter the {noun} in whole cents, with at most two digits after the point."),
]


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("field", MONEY_FIELDS)
@pytest.mark.parametrize(("typed", "message"), NOT_MONEY)
def test_it_refuses_what_is_not_money_in_a_sentence_changing_nothing(
    admin_client, sim, field, typed, message
):
    send, noun = MONEY_FIELDS[field]
    response = send(admin_client, typed)
    assert response.status_code == 200
    assert message.format(noun=noun) in response.text
    assert f'value="{typed}"' in response.text
    assert 'name="confirm" value="1"' not in response.text
    assert writes(sim) == 0
    assert not AlertRule.objects.exists()


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize(
    ("field", "typed", "message"),
    [
        (
            "top-up amount",
            "9.99",
            "The amount must be between $10.00 and $1,000.00: $10.00 is the smallest top-up "
            "for this account.",
        ),
        (
            "top-up amount",
            "1,000.01",
            "The amount must be between $10.00 and $1,000.00: $1,000.00 is the largest top-up "
            "for this account.",
        ),
        (
            "top-up amount",
            "-$25",
            "The amount must be between $10.00 and $1,000.00: $10.00 is the smallest top-up "
            "for this account.",
        ),
        (
            "auto top-up threshold",
            "$4.99",
            "The threshold must be between $5.00 and $10,000.00: $5.00 is Cloudflare’s minimum.",
        ),
        (
            "auto top-up threshold",
            "10,000.01",
            "The threshold must be between $5.00 and $10,000.00.",
        ),
        (
            "auto top-up amount",
            "9.99",
            "The amount must be between $10.00 and $1,000.00: $10.00 is Cloudflare’s minimum.",
        ),
        # Cloudflare's largest top-up for the account bounds the rule's amount.
        ("auto top-up amount", "$1,000.01", "The amount must be between $10.00 and $1,000.00."),
        (
            "spending limit",
            "0.99",
            "The limit must be between $1.00 and $1,000,000.00: $1.00 is Cloudflare’s minimum.",
        ),
        (
            "spending limit",
            "1,000,000.01",
            "The limit must be between $1.00 and $1,000,000.00.",
        ),
        ("spending limit", "", "Enter the limit in dollars, such as 25 or 1,000.50."),
        ("auto top-up threshold", "", "Enter the threshold in dollars, such as 25 or 1,000.50."),
        ("top-up amount", " ", "Enter the amount in dollars, such as 25 or 1,000.50."),
        (
            "alert amount",
            "10,000,000.01",
            "The amount must be between $0.01 and $10,000,000.00.",
        ),
    ],
)
def test_it_names_the_allowed_range_when_it_refuses(admin_client, sim, field, typed, message):
    send, _ = MONEY_FIELDS[field]
    response = send(admin_client, typed)
    assert response.status_code == 200
    assert message in response.text
    assert writes(sim) == 0


@pytest.mark.usefixtures("frozen_clock")
def test_it_bounds_the_top_up_by_the_dashboards_ceiling_in_the_range(admin_client, sim, settings):
    settings.TOPUP_MAX_AMOUNT = Decimal("500")
    response = topup_amount(admin_client, "$500.01")
    assert (
        "The amount must be between $10.00 and $500.00: $500.00 is the largest top-up this "
        "dashboard allows." in response.text
    )
    assert writes(sim) == 0


def test_it_charges_an_amount_typed_with_a_dollar_sign_and_commas(finance_client, sim):
    sim.set_fault("GET topup/limits", "error", status=500)
    page = first_step(finance_client, "$1,000.50")
    assert "Charge $1,000.50" in page
    response = send_back(finance_client, page)
    assert response.status_code == 302
    assert sim.calls["POST topup"] == 1
    assert Topup.objects.get().amount == Decimal("1000.50")
