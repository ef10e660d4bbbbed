"""The spending limit page: set, warn before blocking traffic, delete, and every failure."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client

from dashboard.models import AuditEvent, RefusedChange
from dashboard.services import rules
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, SIMULATOR_NOW

URL = f"/accounts/{ACCOUNT_ID}/spending-limit/"
DELETE_URL = f"/accounts/{ACCOUNT_ID}/spending-limit/delete/"
NOW = datetime.fromtimestamp(SIMULATOR_NOW, UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}
Outcome = AuditEvent.Outcome
#: Far above any day's spend in the seeded account: never blocks traffic now.
SAFE = "50000"

pytestmark = pytest.mark.usefixtures("frozen_clock")


def events() -> list[AuditEvent]:
    return list(AuditEvent.objects.order_by("id"))


def save(client: Client, amount: str, duration="weekly", strategy="sliding", **extra):
    data = {"amount": amount, "duration": duration, "strategy": strategy}
    data.update({k: v for k, v in extra.items() if not k.startswith("HTTP_")})
    headers = {k: v for k, v in extra.items() if k.startswith("HTTP_")}
    return client.post(URL, data, **headers)


def limit_card(client: Client) -> str:
    """The overview's spending-limit card, as HTML."""
    page = client.get(OVERVIEW_URL).text
    return page[page.index('<section id="limit-card"') :].split("</section>", 1)[0]


def spent_today() -> Decimal:
    spend, error = rules.recent_spend(ACCOUNT_ID)
    assert spend is not None, error
    return rules.limit_impact(spend, Decimal(1), "daily", "fixed").spent


# ---------------------------------------------------------------- showing


def test_it_shows_the_limit_and_explains_each_choice(admin_client, sim):
    limit = sim.account(ACCOUNT_ID).spending_limit
    response = admin_client.get(URL)
    assert response.status_code == 200
    text = response.text
    assert f"${limit.amount / 100:,.2f} a month, fixed window" in text
    assert "spent this month" in text
    assert 'type="radio" name="duration" value="monthly"' in text
    assert "Resets at the start of each day, week (Monday) or month (the 1st)" in text
    assert "Always the last 24 hours, 7 days or 30 days" in text
    assert "I understand this stops AI traffic now" not in text
    assert "Remove the limit…" in text


# ---------------------------------------------------------------- saving


def test_it_sets_the_limit_and_redirects(admin_client, sim):
    old = sim.account(ACCOUNT_ID).spending_limit
    before = {"amount": f"{old.amount / 100:.2f}", "duration": "monthly", "strategy": "fixed"}
    response = save(admin_client, SAFE)
    assert response.status_code == 302 and response["Location"] == URL
    limit = sim.account(ACCOUNT_ID).spending_limit
    assert (limit.amount, limit.duration, limit.strategy) == (5_000_000, "weekly", "sliding")
    page = admin_client.get(URL).text
    assert "Spending limit set: $50,000.00 a week, sliding window." in page
    (event,) = events()
    assert (event.action, event.outcome) == (AuditEvent.Action.SPENDING_LIMIT_SET, "accepted")
    assert event.before == before
    assert event.after == {"amount": "50000.00", "duration": "weekly", "strategy": "sliding"}


def test_it_sets_the_limit_over_htmx_with_the_summary_out_of_band(admin_client, sim):
    response = save(admin_client, SAFE, "daily", "fixed", **HTMX)
    assert response.status_code == 200
    assert "<html" not in response.text
    assert 'id="spending-limit-form"' in response.text
    assert 'id="spending-limit-summary" class="rule-summary" hx-swap-oob="true"' in response.text
    assert "<strong>$50,000.00 a day, fixed window</strong>" in response.text
    assert sim.account(ACCOUNT_ID).spending_limit.duration == "daily"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"amount": ""}, "Enter the limit in dollars, such as 25 or 1,000.50."),
        ({"amount": "-3"}, "The limit must be between $1.00 and $1,000,000.00: $1.00 is"),
        ({"amount": "ten"}, "Enter the limit as a number of dollars"),
        ({"amount": "1.005"}, "Enter the limit in whole cents, with at most two digits after"),
        ({"amount": "0.99"}, "The limit must be between $1.00 and $1,000,000.00: $1.00 is"),
        ({"amount": "123456789012"}, "The limit must be between $1.00 and $1,000,000.00."),
        ({"duration": "hourly"}, "Choose daily, weekly or monthly as the window."),
        ({"strategy": "rolling"}, "Choose fixed or sliding as the strategy."),
        ({"duration": ""}, "Choose a window: daily, weekly or monthly."),
    ],
)
def test_it_refuses_bad_input_keeping_it(admin_client, sim, data, message):
    form = {"amount": SAFE, "duration": "weekly", "strategy": "fixed"} | data
    response = admin_client.post(URL, form)
    assert response.status_code == 200
    assert message in response.text
    assert f'name="amount" value="{form["amount"]}"' in response.text or not form["amount"]
    assert sim.calls["POST spending-limit"] == 0
    assert events() == []


def test_it_needs_the_csrf_token(admin, sim):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert save(client, SAFE).status_code == 403
    assert client.post(DELETE_URL).status_code == 403
    assert sim.calls["POST spending-limit"] == sim.calls["DELETE spending-limit"] == 0


@pytest.mark.parametrize("persona", ["lead", "finance"])
def test_it_refuses_and_audits_those_without_permission(client, request, sim, persona):
    client.force_login(request.getfixturevalue(persona))
    assert save(client, SAFE).status_code == 403
    assert client.post(DELETE_URL).status_code == 403
    assert sim.calls["POST spending-limit"] == sim.calls["DELETE spending-limit"] == 0
    assert [(e.action, e.outcome) for e in events()] == [
        (AuditEvent.Action.SPENDING_LIMIT_SET, Outcome.FORBIDDEN),
        (AuditEvent.Action.SPENDING_LIMIT_DELETE, Outcome.FORBIDDEN),
    ]


# ---------------------------------------------------------------- the impact warning


def test_it_warns_before_a_limit_that_blocks_traffic_now(admin_client, sim):
    spent = spent_today()
    assert spent > 2
    response = save(admin_client, "1.00", "daily", "fixed")
    assert response.status_code == 200
    assert f"This blocks gateway traffic now: ${spent:,.2f} already spent today" in response.text
    assert "I understand this stops AI traffic now" in response.text
    assert "tick the box to confirm" in response.text
    assert sim.calls["POST spending-limit"] == 0
    confirmed = save(admin_client, "1.00", "daily", "fixed", confirm="on")
    assert confirmed.status_code == 302
    assert sim.account(ACCOUNT_ID).spending_limit.amount == 100
    # The warning is the confirmation step: until the box is ticked, nothing is recorded.
    assert [e.outcome for e in events()] == [Outcome.ACCEPTED]


def test_it_does_not_ask_to_confirm_a_limit_above_the_spend(admin_client, sim):
    response = save(admin_client, SAFE, "daily", "fixed")
    assert response.status_code == 302


# ---------------------------------------------------------------- upstream failures


@pytest.mark.parametrize(
    ("fault", "params", "said"),
    [
        ("error", {"status": 503}, "is having trouble"),
        ("rate_limit", {"retry_after": 60}, "Cloudflare is limiting how often"),
        ("hang", {}, "Cloudflare did not confirm the change; check before trying again."),
        ("unsuccessful", {}, "answered with an error. Cloudflare said:"),
    ],
)
def test_it_says_what_happened_upstream(admin_client, sim, fault, params, said):
    sim.set_fault("POST spending-limit", fault, **params)
    response = save(admin_client, SAFE)
    assert response.status_code == 200
    assert said in response.text
    assert f'name="amount" value="{SAFE}"' in response.text
    assert sim.calls["POST spending-limit"] == 1
    (event,) = events()
    assert event.outcome == Outcome.FAILED


def test_it_explains_and_remembers_the_deprecation(admin_client, current_mode):
    response = save(admin_client, SAFE)
    assert response.status_code == 200
    text = response.text
    assert "Cloudflare no longer lets anyone set or change an account-wide spending limit" in text
    assert "https://developers.cloudflare.com/ai-gateway/features/spend-limits/" in text
    assert f"https://dash.cloudflare.com/{ACCOUNT_ID}/ai/ai-gateway" in text
    assert f'name="amount" value="{SAFE}"' in text
    assert current_mode.calls["POST spending-limit"] == 1
    assert RefusedChange.objects.filter(kind=RefusedChange.Kind.SPENDING_LIMIT).exists()
    (event,) = events()
    assert event.outcome == Outcome.REFUSED and event.upstream_status == 403
    page = admin_client.get(URL).text
    assert page.index("Cloudflare refused this on") < page.index('name="amount"')
    retry = admin_client.post(URL, {"intent": "retry", "amount": SAFE, "duration": "daily"})
    assert f'name="amount" value="{SAFE}"' in retry.text
    assert "disabled>" not in retry.text and 'name="retrying" value="1"' in retry.text
    # Only Cloudflare's answer changes what is remembered: choosing to try again does not.
    assert RefusedChange.objects.exists()
    assert 'class="rule-fields" disabled' in admin_client.get(URL).text


def test_it_still_deletes_in_current_mode(admin_client, current_mode):
    assert admin_client.get(DELETE_URL).status_code == 200
    response = admin_client.post(DELETE_URL)
    assert response.status_code == 302 and response["Location"] == URL
    assert current_mode.account(ACCOUNT_ID).spending_limit.amount is None
    page = admin_client.get(URL).text
    assert "The spending limit is removed." in page
    assert "No account-wide spending limit." in page
    (event,) = events()
    assert (event.action, event.outcome) == (AuditEvent.Action.SPENDING_LIMIT_DELETE, "accepted")
    assert event.after is None
    assert (event.before or {})["duration"] == "monthly"


def test_it_asks_before_deleting(admin_client, sim):
    confirm = admin_client.get(DELETE_URL)
    assert "Remove the spending limit?" in confirm.text
    assert sim.calls["DELETE spending-limit"] == 0


def test_it_reports_a_failed_delete(admin_client, sim):
    sim.set_fault("DELETE spending-limit", "error", status=500)
    response = admin_client.post(DELETE_URL)
    assert response.status_code == 200
    assert "is having trouble" in response.text
    assert sim.account(ACCOUNT_ID).spending_limit.amount is not None
    assert sim.calls["DELETE spending-limit"] == 1
    (event,) = events()
    assert event.outcome == Outcome.FAILED


# ---------------------------------------------------------------- saying what Cloudflare did

DEPRECATED = "Deprecated: spending limits can no longer be created"
PLAIN_WORDS = "Cloudflare no longer lets anyone set or change an account-wide spending limit"


def test_the_overview_shows_a_limit_just_set_as_set(admin_client, sim):
    assert save(admin_client, SAFE).status_code == 302
    card = limit_card(admin_client)
    assert "$50,000.00" in card and "per week" in card
    assert "can no longer be set" not in card
    assert "refused" not in card


def test_the_overview_says_a_refusal_in_plain_words_first(admin_client, current_mode):
    save(admin_client, SAFE)
    card = limit_card(admin_client)
    assert PLAIN_WORDS in card
    assert f"https://dash.cloudflare.com/{ACCOUNT_ID}/ai/ai-gateway" in card
    assert "https://developers.cloudflare.com/ai-gateway/features/spend-limits/" in card
    assert DEPRECATED in card
    assert card.index(PLAIN_WORDS) < card.index("dash.cloudflare.com") < card.index(DEPRECATED)


def test_the_limit_page_says_a_refusal_in_plain_words_first(admin_client, current_mode):
    for page in (save(admin_client, SAFE).text, admin_client.get(URL).text):
        assert page.index(PLAIN_WORDS) < page.index(DEPRECATED) < page.index('name="amount"')
        assert page.index("dash.cloudflare.com") < page.index(DEPRECATED)


def test_a_later_success_clears_the_refusal_everywhere(admin_client, sim):
    RefusedChange.objects.create(
        account_id=ACCOUNT_ID,
        kind=RefusedChange.Kind.SPENDING_LIMIT,
        refused_by="ada",
        message=DEPRECATED,
    )
    assert PLAIN_WORDS in limit_card(admin_client)
    assert save(admin_client, SAFE, confirm="on").status_code == 302
    assert not RefusedChange.objects.exists()
    assert PLAIN_WORDS not in limit_card(admin_client)
    assert PLAIN_WORDS not in admin_client.get(URL).text


def test_trying_again_keeps_the_form_open_until_cloudflare_answers(admin_client, current_mode):
    save(admin_client, SAFE)
    admin_client.post(URL, {"intent": "retry"})
    typo = save(admin_client, "1e3", retrying="1")
    assert "without an exponent." in typo.text
    assert "disabled>" not in typo.text
    assert current_mode.calls["POST spending-limit"] == 1
    again = save(admin_client, SAFE, retrying="1")
    assert current_mode.calls["POST spending-limit"] == 2
    assert PLAIN_WORDS in again.text and 'class="rule-fields" disabled' in again.text
    assert RefusedChange.objects.count() == 1


def test_removing_the_limit_does_not_forget_that_setting_one_was_refused(
    admin_client, current_mode
):
    save(admin_client, SAFE)
    assert admin_client.post(DELETE_URL).status_code == 302
    assert RefusedChange.objects.filter(kind=RefusedChange.Kind.SPENDING_LIMIT).exists()
    page = admin_client.get(URL).text
    assert "No account-wide spending limit." in page and PLAIN_WORDS in page


def test_a_refused_removal_says_what_to_do_before_cloudflares_words(admin_client, sim):
    sim.set_fault("DELETE spending-limit", "error", status=503, message="Try later <b>now</b>")
    response = admin_client.post(DELETE_URL)
    assert response.status_code == 200
    text = response.text
    assert "Cloudflare did not confirm that the limit is removed." in text
    assert f"https://dash.cloudflare.com/{ACCOUNT_ID}/ai/ai-gateway" in text
    assert "Try later &lt;b&gt;now&lt;/b&gt;" in text
    assert text.index("Cloudflare did not confirm that the limit is removed.") < text.index(
        "Try later"
    )


def test_trying_again_keeps_what_was_typed_and_the_current_choice_for_what_was_not(
    admin_client, current_mode
):
    save(admin_client, SAFE)  # refused: the form closes until someone tries again
    retry = admin_client.post(
        URL, {"intent": "retry", "amount": "75", "duration": "", "strategy": "sliding"}
    )
    assert retry.status_code == 200
    assert 'name="amount" value="75"' in retry.text
    assert 'value="sliding" id="id_strategy_1" required checked' in retry.text
    # No window was sent: the one the form starts from (monthly), not none at all.
    assert 'value="monthly" id="id_duration_2" required checked' in retry.text
