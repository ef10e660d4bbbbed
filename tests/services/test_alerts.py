"""Alert rules over days of simulated spend: each fires once per episode, and is delivered.

Time travels: the simulator's clock and the dashboard's move on together, hours at a time,
and the balance burns down hour by hour as Cloudflare's does. The worker's rounds are run as
``manage.py alerts_worker`` runs them (check every rule, then send what is due). Webhooks go
to a receiver on 127.0.0.1 that counts what it is sent; emails to Django's test outbox.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.core.management import call_command

from billing_api.simulator.state import Invoice
from dashboard.infra import billing, clock
from dashboard.models import AlertDelivery, AlertFiring, AlertRule, AuditEvent
from dashboard.services import alerts
from tests.conftest import ACCOUNT_ID, SIMULATOR_NOW, Travel
from tests.services.test_notify import deliver_due
from tests.webhook_receiver import Receiver

Kind = AlertRule.Kind


def worker_round() -> list[alerts.Outcome]:
    """One round of ``manage.py alerts_worker``'s jobs, in this thread: check every rule, send
    what is due (the command itself: test_the_worker_command_runs_a_round)."""
    outcomes = alerts.check_all()
    deliver_due()
    return outcomes


def days_of_rounds(travel: Travel, days: float, every_hours: float = 6) -> int:
    """Rounds every ``every_hours`` over ``days``; how many firings they made."""
    fired = 0
    for _ in range(round(days * 24 / every_hours)):
        travel.hours(every_hours)
        fired += sum(outcome.fired is not None for outcome in worker_round())
    return fired


def balance(account_id: str = ACCOUNT_ID) -> Decimal:
    reading = alerts.read_account(account_id)
    assert reading.balance is not None, reading.problems
    return reading.balance


def make_rule(kind: str, receiver: Receiver, path: str = "/hook", **values: object) -> AlertRule:
    return AlertRule.objects.create(
        account_id=ACCOUNT_ID,
        kind=kind,
        emails="finance@example.com",
        webhooks=receiver.url(path),
        created_by="test",
        **values,
    )


def test_a_low_balance_fires_once_per_episode_over_days(travel, receiver, no_auto_topup, db):
    start = balance()
    # About two days of spend below today's balance.
    rule = make_rule(Kind.BALANCE_BELOW, receiver, amount=(start - 400).quantize(Decimal("1")))
    rule.repeat_hours = 0  # only once per episode, however long it lasts
    rule.save()
    assert days_of_rounds(travel, 5) == 1
    assert receiver.count("/hook") == 1
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["finance@example.com"]
    assert "Balance below" in mail.outbox[0].subject
    rule.refresh_from_db()
    assert rule.active and rule.episode == 1
    # A top-up lifts it well clear: the episode ends...
    billing.client_for(ACCOUNT_ID).create_topup(Decimal(1000))
    assert days_of_rounds(travel, 0.5) == 0
    rule.refresh_from_db()
    assert not rule.active and rule.last_cleared_at is not None
    assert AlertFiring.objects.get(rule=rule, episode=1).cleared_at is not None
    # ...and the next fall below is a new one, told once again.
    assert days_of_rounds(travel, 7) == 1
    assert receiver.count("/hook") == 2
    assert len(mail.outbox) == 2
    assert list(AlertFiring.objects.filter(rule=rule).values_list("episode", "repeat")) == [
        (2, 0),
        (1, 0),
    ]
    payload = receiver.received["/hook"][0]
    assert payload["kind"] == "balance_below" and payload["account_id"] == ACCOUNT_ID
    assert payload["url"] == f"https://spend.example.com/accounts/{ACCOUNT_ID}/alerts/"
    assert Decimal(payload["facts"]["value"]) < Decimal(payload["facts"]["threshold"])


def test_a_firing_rule_shows_what_the_last_round_saw(travel, receiver, no_auto_topup, db):
    rule = make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100, repeat_hours=0)
    assert days_of_rounds(travel, 0.25) == 1
    rule.refresh_from_db()
    fired_seen, fired_checked = rule.last_seen, rule.last_checked_at
    assert fired_checked is not None
    # A day on, still below and no reminder due: the page's figure is the newest round's.
    assert days_of_rounds(travel, 1) == 0
    rule.refresh_from_db()
    assert rule.active and rule.last_checked_at is not None
    assert rule.last_checked_at > fired_checked
    assert rule.last_seen != fired_seen
    assert f"{balance():,.2f}" in rule.last_seen


def test_a_lasting_condition_is_repeated_after_its_period_only(travel, receiver, no_auto_topup, db):
    rule = make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100, repeat_hours=24)
    # True from the first round; every 6 hours for 3 days: once, then once a day.
    assert days_of_rounds(travel, 3) == 3
    repeats = AlertFiring.objects.filter(rule=rule).order_by("fired_at")
    assert [f.repeat for f in repeats] == [0, 1, 2]
    assert [f.episode for f in repeats] == [1, 1, 1]
    assert repeats[1].subject.startswith("Still: ")
    assert receiver.count("/hook") == 3


def test_a_failed_auto_topup_fires_once_and_clears_when_the_rule_is_saved_again(
    travel, receiver, sim, db
):
    client = billing.client_for(ACCOUNT_ID)
    rule = make_rule(Kind.AUTO_TOPUP_FAILED, receiver, repeat_hours=0)
    assert days_of_rounds(travel, 0.25) == 0  # on and working
    # The next auto top-up is declined: the balance is put under the threshold now.
    sim.fail_auto_topup(ACCOUNT_ID)
    client.set_topup_config(Decimal(1000), (balance() + 50).quantize(Decimal(1)))
    assert days_of_rounds(travel, 2) == 1
    assert "declined" in receiver.received["/hook"][0]["message"]
    # Saving the rule again is how an account recovers (as in Cloudflare's dashboard).
    client.set_topup_config(Decimal(1000), Decimal(570))
    assert days_of_rounds(travel, 0.5) == 0
    rule.refresh_from_db()
    assert not rule.active
    assert receiver.count("/hook") == 1


def test_a_spend_spike_fires_once_and_clears_when_spend_is_back(travel, receiver, sim, db):
    rule = make_rule(Kind.SPEND_SPIKE, receiver, factor=Decimal(3), repeat_hours=0)
    assert days_of_rounds(travel, 1) == 0
    sim.boost_usage(ACCOUNT_ID, 8.0, hours=24)
    assert days_of_rounds(travel, 1) == 1
    sent = receiver.received["/hook"][0]
    assert Decimal(sent["facts"]["ratio"]) > 3
    # A day after the spike ended, the last 24 hours are ordinary again.
    assert days_of_rounds(travel, 2) == 0
    rule.refresh_from_db()
    assert not rule.active and rule.episode == 1
    assert receiver.count("/hook") == 1


def test_month_to_date_fires_once_a_month(travel, receiver, sim, db):
    # June 10th: about 2 000 dollars spent so far; the alert is for 3 000. (Auto top-up keeps
    # the balance up meanwhile.)
    rule = make_rule(Kind.MONTH_TO_DATE_ABOVE, receiver, amount=Decimal(3000), repeat_hours=0)
    days_of_rounds(travel, 36, every_hours=12)
    fired = list(AlertFiring.objects.filter(rule=rule).order_by("fired_at"))
    # Above 3 000 in June (fired once), cleared on July 1st, above again in mid-July.
    assert [f.fired_at.month for f in fired] == [6, 7]
    assert [f.episode for f in fired] == [1, 2]
    assert receiver.count("/hook") == 2


def test_a_worker_that_read_the_rule_before_another_fired_it_does_not_fire(
    travel, receiver, no_auto_topup, db
):
    rule = make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100)
    reading = alerts.read_account(ACCOUNT_ID)
    first, second = AlertRule.objects.get(pk=rule.pk), AlertRule.objects.get(pk=rule.pk)
    assert alerts.check(first, reading).fired is not None
    assert alerts.check(second, reading).fired is None  # the same episode, already fired
    assert AlertFiring.objects.count() == 1
    assert AlertDelivery.objects.count() == 2


def test_the_slack_format_posts_text(travel, receiver, no_auto_topup, db):
    rule = make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100)
    rule.webhook_format = AlertRule.WebhookFormat.SLACK
    rule.save()
    worker_round()
    (payload,) = receiver.received["/hook"]
    assert set(payload) == {"text"}
    assert payload["text"].startswith("*Balance below $")
    assert f"<https://spend.example.com/accounts/{ACCOUNT_ID}/alerts/|" in payload["text"]


def test_the_alert_email_has_text_and_html(travel, receiver, no_auto_topup, db):
    make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100)
    worker_round()
    (message,) = mail.outbox
    assert message.subject.startswith("[AI Gateway spend] Balance below $")
    assert "The balance is $" in message.body
    assert f"https://spend.example.com/accounts/{ACCOUNT_ID}/alerts/" in message.body
    assert isinstance(message, EmailMultiAlternatives)
    html, kind = message.alternatives[0]
    assert kind == "text/html" and isinstance(html, str) and "Open the alerts page" in html


def test_a_check_reads_no_more_than_the_overview_does(travel, receiver, sim, db):
    make_rule(Kind.BALANCE_BELOW, receiver, amount=Decimal(1))
    make_rule(Kind.RUNWAY_BELOW, receiver, days=3)
    make_rule(Kind.SPEND_SPIKE, receiver, factor=Decimal(5))
    sim.reset_calls()
    alerts.check_all()
    assert sim.calls == {"GET credit-balance": 1, "GET usage-history": 1}


def test_an_upstream_failure_changes_no_rule(travel, receiver, sim, no_auto_topup, db):
    rule = make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100)
    sim.set_fault("GET credit-balance", "error", status=503)
    (outcome,) = alerts.check_all()
    assert outcome.verdict.state == "unknown"
    rule.refresh_from_db()
    assert not rule.active and "Not judged" in rule.last_seen
    assert AlertFiring.objects.count() == 0


def test_now_moves_with_the_simulator(travel) -> None:
    before = clock.now()
    travel.hours(5)
    assert clock.now() - before == timedelta(hours=5)
    assert before == datetime.fromtimestamp(SIMULATOR_NOW, UTC)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("roles_back_after_module")
def test_the_worker_command_runs_a_round(travel, receiver, no_auto_topup):
    make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100)
    out = StringIO()
    call_command("alerts_worker", "--once", stdout=out)
    assert "fired: Balance below $" in out.getvalue()
    assert receiver.count("/hook") == 1 and len(mail.outbox) == 1
    call_command("alerts_worker", "--once", stdout=out)
    assert receiver.count("/hook") == 1  # the same episode: nothing more


def test_the_monthly_cap_turns_auto_topup_off_once_audited_and_alerted(
    travel, receiver, sim, admin_client, db
):
    # The default account refills $1 000 when its balance falls below $570, and spends
    # about $220 a day: within two weeks automatic top-ups this month reach a $1 000 cap.
    rule = make_rule(Kind.AUTO_TOPUP_CAP, receiver, amount=Decimal(1000), repeat_hours=24)
    sim.reset_calls()
    assert days_of_rounds(travel, 14) >= 1
    assert sim.calls["DELETE topup/config"] == 1
    turned_off = AuditEvent.objects.filter(action="auto_topup.delete")
    assert [(e.outcome, e.username) for e in turned_off] == [("accepted", alerts.CAP_ACTOR)]
    assert not billing.client_for(ACCOUNT_ID).credit_balance().topup_config.is_set
    first = AlertFiring.objects.filter(rule=rule).order_by("fired_at").first()
    assert first is not None and first.facts["action"] == "turned_off"
    # Sent once the action was done, saying what was done and how to restore it.
    sent = receiver.received["/hook"][0]
    assert "turned auto top-up off" in sent["message"]
    assert "save the auto top-up rule again" in sent["message"]
    # Later reminders (auto top-up already off) turn nothing off again.
    assert all(f.facts["action"] == "already_off" for f in rule.firings.exclude(pk=first.pk))
    # The pages say so, and how to restore it.
    rule.refresh_from_db()
    assert rule.active, (rule.last_seen, list(rule.firings.values_list("fired_at", "cleared_at")))
    for page in (f"/accounts/{ACCOUNT_ID}/", f"/accounts/{ACCOUNT_ID}/auto-top-up/"):
        text = admin_client.get(page, headers={"Cache-Control": "no-cache"}).text
        assert "Auto top-up was turned off on" in text and "monthly cap" in text
        assert f'href="/accounts/{ACCOUNT_ID}/alerts/"' in text


def test_a_cap_cloudflare_refuses_to_enforce_says_so(current_mode, receiver, settings, db):
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    rule = make_rule(Kind.AUTO_TOPUP_CAP, receiver, amount=Decimal(100))
    reading = alerts.Reading(
        at=clock.now(),
        auto_topups_this_month=Decimal(150),
        auto_topup_rule=(Decimal(570), Decimal(1000)),
    )
    fired = alerts.check(rule, reading).fired
    assert fired is not None and fired.facts["action"] == "refused"
    assert "refused by Cloudflare" in fired.message
    event = AuditEvent.objects.get(action="auto_topup.delete")
    assert (event.outcome, event.username, event.upstream_status) == (
        "refused",
        alerts.CAP_ACTOR,
        403,
    )
    deliver_due()
    assert "turn it off in Cloudflare's dashboard" in receiver.received["/hook"][0]["message"]


def test_a_short_runway_fires_once_per_episode(travel, receiver, no_auto_topup, db):
    # About $2 360 at about $220 a day: some 11 days of credit, 7 days' worth in 4 days.
    rule = make_rule(Kind.RUNWAY_BELOW, receiver, days=7, repeat_hours=0)
    assert days_of_rounds(travel, 6) == 1
    sent = receiver.received["/hook"][0]
    assert sent["kind"] == "runway_below" and Decimal(sent["facts"]["value"]) < 7
    assert "runs out in" in sent["message"]
    # A top-up buys a few more days than the margin: the episode ends...
    billing.client_for(ACCOUNT_ID).create_topup(Decimal(1000))
    assert days_of_rounds(travel, 0.5) == 0
    rule.refresh_from_db()
    assert not rule.active
    # ...and the credit running short again is a new one.
    assert days_of_rounds(travel, 6) == 1
    assert receiver.count("/hook") == 2 and len(mail.outbox) == 2


# Every status Cloudflare's spec lists for an invoice (Stripe's), and none at all.
INVOICE_STATUSES = ["draft", "open", "paid", "uncollectible", "void", None]


@pytest.mark.parametrize("status", INVOICE_STATUSES)
def test_it_counts_only_paid_auto_topups_towards_the_cap(travel, sim, status):
    before = alerts.read_account(ACCOUNT_ID, auto_topups=True).auto_topups_this_month
    invoice = Invoice("in_1capstatus", 77_777, int(sim.now()) - 3600, "auto", "auto-topup")
    invoice.status = status
    sim.account(ACCOUNT_ID).invoices.append(invoice)
    after = alerts.read_account(ACCOUNT_ID, auto_topups=True).auto_topups_this_month
    assert before is not None and after is not None
    # Only a paid invoice moved money: the others are due, abandoned or cancelled.
    assert after - before == (Decimal("777.77") if status == "paid" else 0)
