"""One-off top-ups: the page, the two-step form, every refusal, upstream failures, polling."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from dashboard.models import AuditEvent, Topup
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID
from tests.topup_flow import confirm_data

PAGE = reverse("dashboard:topups", args=[ACCOUNT_ID])
CREATE = reverse("dashboard:topup_create", args=[ACCOUNT_ID])
HTMX = {"HX-Request": "true", "HX-Target": "topup-form"}


def key() -> str:
    return uuid.uuid4().hex


def confirm(
    client: Client, amount: str = "25", url: str = CREATE, headers: dict[str, str] | None = None
) -> Any:
    """The amount, then the confirmation the page answered with."""
    return client.post(url, confirm_data(client, url, amount), headers=headers)


def confirm_directly(client: Client, amount: str = "25") -> Any:
    """One POST with ``confirm``, without the confirmation step (refused before it matters)."""
    return client.post(CREATE, {"amount": amount, "idempotency_key": key(), "confirm": "1"})


def topup_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.TOPUP))


def test_it_shows_the_form_and_an_empty_history(finance_client):
    page = finance_client.get(PAGE).text
    assert 'id="topup-form"' in page and 'id="balance-summary"' in page
    assert 'name="idempotency_key"' in page
    assert "No top-ups have been made from this dashboard yet." in page
    assert "At least $10.00, at most $1,000.00" in page
    for pick in ("$25.00", "$50.00", "$100.00", "$250.00"):
        assert f">{pick}</button>" in page


def test_it_gives_each_rendered_form_a_fresh_key(finance_client):
    first = finance_client.get(PAGE).text
    second = finance_client.get(PAGE).text
    pick = 'name="idempotency_key" value="'
    assert first.split(pick)[1][:32] != second.split(pick)[1][:32]


def test_it_shows_the_page_without_the_form_to_whoever_cannot_top_up(finance_client, finance):
    from django.contrib.auth.models import Permission

    finance.user_permissions.clear()
    finance.groups.clear()
    finance.user_permissions.add(Permission.objects.get(codename="view_topups"))
    page = Client()
    page.force_login(finance)
    text = page.get(PAGE).text
    assert 'id="topup-history"' in text and 'id="topup-form"' not in text


def test_it_links_top_ups_in_the_nav_for_finance_only(finance_client, lead):
    lead_client = Client()
    lead_client.force_login(lead)
    assert (
        f'href="{PAGE}"'
        in finance_client.get(reverse("dashboard:overview", args=[ACCOUNT_ID])).text
    )
    assert (
        f'href="{PAGE}"'
        not in lead_client.get(reverse("dashboard:overview", args=[ACCOUNT_ID])).text
    )


def test_it_asks_for_confirmation_naming_the_card(finance_client, sim):
    response = finance_client.post(CREATE, {"amount": "25", "idempotency_key": key()})
    assert response.status_code == 200
    assert "Charge $25.00 to Visa •••• 4242?" in response.text
    assert 'name="confirm"' in response.text
    assert sim.calls["POST topup"] == 0


def test_it_takes_a_quick_pick_to_the_confirmation(finance_client, sim):
    response = finance_client.post(CREATE, {"preset": "100", "idempotency_key": key()})
    assert "Charge $100.00 to Visa •••• 4242?" in response.text


def test_it_confirms_as_a_fragment_with_htmx(finance_client):
    response = finance_client.post(CREATE, {"amount": "50", "idempotency_key": key()}, headers=HTMX)
    assert response.text.lstrip().startswith('<section id="topup-form"')
    assert "Charge $50.00" in response.text and "<html" not in response.text


def test_it_keeps_the_amount_when_going_back_to_change_it(finance_client):
    data = {"amount": "50", "idempotency_key": key(), "edit": "1"}
    response = finance_client.post(CREATE, data)
    assert 'value="50"' in response.text and 'name="confirm"' not in response.text


def test_it_says_there_is_no_card_and_offers_no_confirm_button(client, finance):
    client.force_login(finance)
    url = reverse("dashboard:topup_create", args=[OTHER_ACCOUNT_ID])
    response = client.post(url, {"amount": "25", "idempotency_key": key()})
    assert "There is no payment method on file" in response.text
    assert 'name="confirm"' not in response.text
    assert f"https://dash.cloudflare.com/{OTHER_ACCOUNT_ID}/ai/ai-gateway" in response.text


def test_it_tops_up_and_redirects_to_the_status(finance_client, sim, finance):
    response = confirm(finance_client, "25")
    topup = Topup.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{PAGE}?topup={topup.pk}"
    assert sim.calls["POST topup"] == 1
    assert topup.status == Topup.Status.PENDING and topup.payment_intent_id
    assert topup.amount == Decimal("25.00") and topup.card == "visa 4242"
    assert topup.username == "frank" and topup.created_by == finance
    page = finance_client.get(response["Location"]).text
    assert "Cloudflare is processing the payment of $25.00" in page
    assert 'hx-trigger="every 2s"' in page
    assert topup.payment_intent_id in page
    (event,) = topup_events()
    assert event.outcome == AuditEvent.Outcome.ACCEPTED
    assert event.after is not None
    assert event.after["payment_intent_id"] == topup.payment_intent_id
    assert event.after["amount"] == "25.00"
    assert event.before is None, "a top-up changes no setting"
    assert event.idempotency_key == topup.idempotency_key


def test_it_tops_up_with_htmx_and_updates_the_history(finance_client, sim):
    response = confirm(finance_client, "50", headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="topup-form"')
    assert 'id="topup-status"' in response.text and 'hx-trigger="every 2s"' in response.text
    assert 'id="topup-history" class="card topup-history" aria-labelledby' in response.text
    assert 'hx-swap-oob="true"' in response.text
    assert "<html" not in response.text
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_it_polls_until_completed_then_refreshes_the_balance(finance_client, sim):
    confirm(finance_client, "25")
    topup = Topup.objects.get()
    status_url = reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk])
    before = finance_client.get(PAGE).text
    assert "$25.00" in before
    pending = finance_client.get(status_url, HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 2s"' in pending.text and "balance-summary" not in pending.text
    sim.advance_clock(6)
    cache.clear()  # the status is cached for 2 s: let that pass
    done = finance_client.get(status_url, HTTP_HX_REQUEST="true")
    assert "Done: $25.00 was added to the balance." in done.text
    assert "hx-trigger" not in done.text.split('id="balance-summary"')[0]
    assert '<section id="balance-summary"' in done.text and 'hx-swap-oob="true"' in done.text
    oob_balance = done.text.split('<section id="balance-summary"')[1].split("</section>")[0]
    assert oob_balance != before.split('<section id="balance-summary"')[1].split("</section>")[0]
    history = done.text.split('<section id="topup-history"')[1]
    assert ">Completed</span>" in history and ">Pending</span>" not in history
    topup.refresh_from_db()
    assert topup.status == Topup.Status.COMPLETED and topup.completed_at is not None
    # Completed is stored: later polls do not ask Cloudflare.
    calls = sim.calls["POST topup/status"]
    finance_client.get(status_url, HTTP_HX_REQUEST="true")
    assert sim.calls["POST topup/status"] == calls


def test_it_shows_the_new_balance_after_completion(finance_client, sim):
    def balance(text: str) -> str:
        return text.split('class="balance')[1].split("</p>")[0]

    first = balance(finance_client.get(PAGE).text)
    confirm(finance_client, "100")
    sim.advance_clock(6)
    cache.clear()
    topup = Topup.objects.get()
    finance_client.get(
        reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk]), HTTP_HX_REQUEST="true"
    )
    assert balance(finance_client.get(PAGE).text) != first


def test_it_caches_status_polls_briefly(finance_client, sim):
    confirm(finance_client, "25")
    topup = Topup.objects.get()
    url = reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk])
    for _ in range(3):
        finance_client.get(url, HTTP_HX_REQUEST="true")
    assert sim.calls["POST topup/status"] == 1


def test_it_redirects_a_status_request_without_htmx_to_the_page(finance_client):
    confirm(finance_client, "25")
    topup = Topup.objects.get()
    response = finance_client.get(reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk]))
    assert response["Location"] == f"{PAGE}?topup={topup.pk}"


def test_it_hides_another_accounts_top_up(finance_client):
    confirm(finance_client, "25")
    topup = Topup.objects.get()
    url = reverse("dashboard:topup_status", args=[OTHER_ACCOUNT_ID, topup.pk])
    assert finance_client.get(url, HTTP_HX_REQUEST="true").status_code == 404


def test_it_says_a_long_pending_top_up_may_need_action(finance_client, sim):
    from datetime import timedelta

    confirm(finance_client, "25")
    topup = Topup.objects.get()
    Topup.objects.filter(pk=topup.pk).update(created_at=topup.created_at - timedelta(minutes=11))
    page = finance_client.get(f"{PAGE}?topup={topup.pk}").text
    assert "3-D Secure" in page


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("", "Enter the amount in dollars, such as 25 or 1,000.50."),
        ("abc", "Enter the amount as a number of dollars, such as 25 or 1,000.50."),
        ("-5", "The amount must be between $10.00 and $1,000.00: $10.00 is the smallest"),
        ("0", "The amount must be between $10.00 and $1,000.00: $10.00 is the smallest"),
        ("25.001", "Enter the amount in whole cents, with at most two digits after the point."),
        ("1e400", "without an exponent."),
        ("99999999999999999", "$1,000.00 is the largest top-up for this account."),
        ("9" * 40, "$1,000.00 is the largest top-up for this account."),
        ("NaN", "Enter the amount as a number of dollars, such as 25 or 1,000.50."),
        (
            "9.99",
            "The amount must be between $10.00 and $1,000.00: $10.00 is the smallest top-up for "
            "this account.",
        ),
        (
            "1000.01",
            "The amount must be between $10.00 and $1,000.00: $1,000.00 is the largest top-up for "
            "this account.",
        ),
    ],
)
def test_it_refuses_a_bad_amount_and_keeps_it(finance_client, sim, amount, message):
    response = confirm(finance_client, amount)
    assert response.status_code == 200
    assert message in response.text
    assert f'value="{amount}"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert sim.calls["POST topup"] == 0
    assert not Topup.objects.exists()
    (event,) = topup_events()
    assert event.outcome == AuditEvent.Outcome.INVALID


def test_it_refuses_a_bad_amount_as_a_fragment(finance_client, sim):
    response = confirm(finance_client, "abc", headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="topup-form"')


def test_it_uses_the_documented_minimum_when_limits_do_not_answer(finance_client, sim):
    sim.set_fault("GET topup/limits", "error", status=500)
    assert "$10.00 is the smallest top-up for this account." in confirm(finance_client, "5").text
    response = confirm(finance_client, "5000")  # within the ceiling: Cloudflare decides
    assert response.status_code == 302
    assert Topup.objects.get().status == Topup.Status.FAILED
    assert sim.calls["POST topup"] == 1


@pytest.mark.parametrize("bad_key", ["", "not-a-key", "A" * 32, "0" * 31])
def test_it_refuses_a_missing_or_invalid_key(finance_client, sim, bad_key):
    data = {"amount": "25", "idempotency_key": bad_key, "confirm": "1"}
    response = finance_client.post(CREATE, data)
    assert response.status_code == 200
    assert "reload the page and try again" in response.text
    assert sim.calls["POST topup"] == 0
    # A fresh key is given so that the person can carry on.
    assert f'name="idempotency_key" value="{bad_key}"' not in response.text


def test_it_never_sends_a_used_key_again(finance_client, sim):
    data = confirm_data(finance_client, CREATE, "25")
    first = finance_client.post(CREATE, data)
    second = finance_client.post(CREATE, data)
    third = finance_client.post(CREATE, data | {"amount": "75"})
    assert first["Location"] == second["Location"] == third["Location"]
    assert sim.calls["POST topup"] == 1
    assert Topup.objects.count() == 1
    htmx = finance_client.post(CREATE, data, headers=HTMX)
    assert "This top-up had already been submitted." in htmx.text
    assert sim.calls["POST topup"] == 1


def test_it_refuses_a_post_without_csrf(finance):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(finance)
    response = confirm_directly(strict)
    assert response.status_code == 403
    assert not Topup.objects.exists()


def test_it_refuses_and_audits_a_user_without_permission(lead_client, sim):
    response = confirm_directly(lead_client)
    assert response.status_code == 403
    assert sim.calls["POST topup"] == 0
    assert not Topup.objects.exists()
    (event,) = topup_events()
    assert event.outcome == AuditEvent.Outcome.FORBIDDEN and event.username == "lena"


def test_it_answers_405_to_a_get_of_the_form_action(finance_client, lead):
    lead_client = Client()
    lead_client.force_login(lead)
    assert finance_client.get(CREATE).status_code == 405
    assert lead_client.get(CREATE).status_code == 403


def test_it_shows_cloudflares_refusal_and_keeps_the_amount(client, finance, sim):
    client.force_login(finance)
    url = reverse("dashboard:topup_create", args=[OTHER_ACCOUNT_ID])
    response = client.post(url, confirm_data(client, url, "25"), follow=True)
    assert "did not go through" in response.text
    assert "Cloudflare refused the top-up: No default payment method on file" in response.text
    assert 'value="25.00"' in response.text
    topup = Topup.objects.get()
    assert topup.status == Topup.Status.FAILED and topup.upstream_status == 400
    (event,) = topup_events()
    assert event.outcome == AuditEvent.Outcome.REFUSED
    assert event.after == {"amount": "25.00"}
    assert sim.calls["POST topup"] == 1


@pytest.mark.parametrize(
    ("fault", "params", "status", "outcome", "says"),
    [
        ("error", {"status": 502}, "failed", "failed", "Nothing was charged."),
        ("rate_limit", {"retry_after": 30}, "failed", "failed", "Nothing was charged."),
        (
            "unsuccessful",
            {"code": 1000, "message": "card declined"},
            "failed",
            "failed",
            "Cloudflare did not accept the top-up: card declined",
        ),
        ("hang", {"seconds": 30}, "unknown", "unknown", "could not tell whether Cloudflare took"),
    ],
)
def test_it_reports_an_upstream_failure(
    finance_client, sim, caplog, fault, params, status, outcome, says
):
    sim.set_fault("POST topup", fault, **params)
    with caplog.at_level(logging.DEBUG):
        response = confirm(finance_client, "25", headers=HTMX)
    assert response.status_code == 200
    assert says in response.text
    assert 'value="25.00"' in response.text  # kept for another try, with a new key
    topup = Topup.objects.get()
    assert topup.status == status
    (event,) = topup_events()
    assert event.outcome == outcome
    assert sim.calls["POST topup"] == 1
    if status == "unknown":
        assert "invoice list" in response.text and "dash.cloudflare.com" in response.text
        assert "hx-trigger" not in response.text.split('id="topup-history"')[0]


def test_it_never_shows_or_logs_the_client_secret(finance_client, sim, caplog):
    with caplog.at_level(logging.DEBUG):
        redirect = confirm(finance_client, "25")
        pages = [finance_client.get(redirect["Location"]).text]
        topup = Topup.objects.get()
        status_url = reverse("dashboard:topup_status", args=[ACCOUNT_ID, topup.pk])
        pages.append(finance_client.get(status_url, HTTP_HX_REQUEST="true").text)
        pages.append(confirm(finance_client, "30", headers=HTMX).text)
    secret = sim.account(ACCOUNT_ID).client_secret(
        sim.account(ACCOUNT_ID).topups[topup.payment_intent_id]
    )
    assert "_secret_" in secret
    for text in [*pages, caplog.text]:
        assert "_secret_" not in text
    for event in topup_events():
        assert "_secret_" not in str(event.after) + event.detail
    assert "_secret_" not in str(list(Topup.objects.values()))


def test_it_paginates_the_history_newest_first(finance_client, finance):
    for number in range(25):
        Topup.objects.create(
            account_id=ACCOUNT_ID,
            idempotency_key=f"{number:032x}",
            amount=Decimal(10 + number),
            username="frank",
            status=Topup.Status.COMPLETED,
        )
    first = finance_client.get(PAGE).text
    assert "$34.00" in first and "$14.00" not in first and "Page 1 of 2" in first
    second = finance_client.get(
        f"{PAGE}?page=2", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="topup-history"
    ).text
    assert second.lstrip().startswith('<section id="topup-history"')
    assert "$14.00" in second and "$34.00" not in second
