"""The weekly digest (dashboard/services/digest.py): once a week from Monday 08:00, per
subscriber, with what their role may see; and the page where anyone opts in or out."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.core.mail import EmailMultiAlternatives

from billing_api.simulator.state import Invoice
from dashboard import roles
from dashboard.models import AccountAccess, DigestSubscription
from dashboard.services import digest
from tests.conftest import ACCOUNT_ID, Travel

# The simulator's clock stands on Wednesday 10 June 2026, 12:30 UTC (the reporting zone).
WEDNESDAY = datetime(2026, 6, 10, 12, 30, tzinfo=UTC)


def subscribe(user) -> DigestSubscription:
    return DigestSubscription.objects.create(user=user)


def test_it_goes_out_once_a_week_from_monday_morning(travel: Travel, finance, lead):
    subscribe(finance)
    subscribe(lead)
    assert travel.now() == WEDNESDAY
    # Due since Monday 08:00: this week's digest (about the week before) goes out now...
    assert digest.send_due() == 2
    assert sorted(m.to[0] for m in mail.outbox) == ["frank@example.com", "lena@example.com"]
    # ...once: not again this week, however often the worker looks.
    for _ in range(4):
        travel.hours(24)
        assert digest.send_due() == 0
    # Monday 15 June: at 07:00 not yet, from 08:00 the next one.
    travel.hours(18.5)  # from Sunday 12:30 to Monday 07:00
    assert travel.now().weekday() == 0 and travel.now().hour == 7
    assert digest.send_due() == 0
    travel.hours(1)
    assert digest.send_due() == 2
    assert len(mail.outbox) == 4
    assert "8 Jun–14 Jun" in mail.outbox[-1].subject


def test_each_reader_gets_what_their_role_shows(travel: Travel, finance, lead, settings):
    subscribe(finance)
    subscribe(lead)
    digest.send_due()
    by_reader = {m.to[0]: m for m in mail.outbox}
    frank, lena = by_reader["frank@example.com"], by_reader["lena@example.com"]
    for message in (frank, lena):
        assert "Spend: $" in message.body and "Runway: " in message.body
        assert "on the week before" in message.body or "the same as" in message.body
        assert message.subject == "[AI Gateway spend] Your week: 1 Jun–7 Jun"
    assert "Top-ups:" in frank.body and "Other invoices:" in frank.body
    assert "Top-ups:" not in lena.body and "invoices:" not in lena.body.lower()
    # One section per account each may see (both are granted every configured one).
    accounts = len(settings.BILLING_ACCOUNTS)
    assert frank.body.count("== ") == accounts == lena.body.count("== ")
    assert isinstance(frank, EmailMultiAlternatives)
    html, kind = frank.alternatives[0]
    assert kind == "text/html" and isinstance(html, str)
    assert "Spend last week" in html and "Other invoices" in html
    assert "Top-ups" in html


def test_the_figures_are_last_weeks(travel: Travel, finance, sim):
    subscribe(finance)
    week = digest.build(finance, travel.now())
    assert (week.week_start, week.week_end) == (
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 6, 8, tzinfo=UTC),
    )
    first = week.accounts[0]
    account = sim.account(first.account.id)
    hour = int(week.week_start.timestamp() // 3600)
    expected = account.usage_between(hour, hour + 7 * 24) / 100
    assert first.spent is not None and abs(float(first.spent) - expected) < 0.01
    assert first.topups is not None and first.invoices is not None


def test_a_failed_send_is_tried_again_and_reported(travel: Travel, finance, settings):
    subscription = subscribe(finance)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    good = settings.MAILERS
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 2},
        }
    }
    assert digest.send_due() == 0
    subscription.refresh_from_db()
    assert subscription.week is None and subscription.last_error == "ConnectionRefusedError"
    settings.MAILERS = good
    assert digest.send_due() == 1
    subscription.refresh_from_db()
    assert subscription.last_error == "" and subscription.week is not None


def test_a_deactivated_user_gets_none(travel: Travel, finance):
    subscribe(finance)
    finance.is_active = False
    finance.save()
    assert digest.send_due() == 0
    assert mail.outbox == []


# ---------------------------------------------------------------- the page


def test_anyone_who_sees_an_account_opts_in_and_out(lead_client, lead):
    page = lead_client.get("/digest/")
    assert page.status_code == 200 and "Email me a digest" in page.text
    assert "lena@example.com" in page.text  # where it goes: the user's own address
    response = lead_client.post("/digest/", {"wanted": "on"})
    assert response.status_code == 302
    assert DigestSubscription.objects.filter(user=lead).exists()
    lead_client.post("/digest/", {})
    assert not DigestSubscription.objects.exists()


def test_it_goes_to_the_users_own_address_whatever_is_typed_in(travel, lead_client, lead):
    lead_client.post("/digest/", {"wanted": "on", "email": "someone-else@example.net"})
    assert "someone-else" not in lead_client.get("/digest/").text
    lead.email = "lena.new@example.com"
    lead.save()
    assert digest.send_due() == 1
    assert [m.to for m in mail.outbox] == [["lena.new@example.com"]]


def test_a_user_with_no_address_is_told_and_nothing_changes(lead_client, lead):
    lead.email = ""
    lead.save()
    assert "You have no email address" in lead_client.get("/digest/").text
    response = lead_client.post("/digest/", {"wanted": "on"})
    assert response.status_code == 200 and "You have no email address" in response.text
    assert not DigestSubscription.objects.exists()


def lose_role(user) -> None:
    user.groups.clear()


def lose_grants(user) -> None:
    AccountAccess.objects.filter(user=user).delete()


def lose_address(user) -> None:
    user.email = ""
    user.save()


@pytest.mark.parametrize("loss", [lose_role, lose_grants, lose_address])
def test_a_user_who_lost_the_role_grants_or_address_gets_nothing_until_it_is_back(
    travel: Travel, finance, loss
):
    subscription = subscribe(finance)
    loss(finance)
    assert digest.send_due() == 0
    assert mail.outbox == []
    # The subscription is kept, the week skipped: with a new role, grant or address, the next
    # week's digest goes out.
    subscription.refresh_from_db()
    assert subscription.week is not None and subscription.last_sent_at is None
    finance.email = "frank@example.com"
    finance.save()
    finance.groups.add(Group.objects.get(name=roles.FINANCE))
    AccountAccess.objects.get_or_create(user=finance, account_id=ACCOUNT_ID)
    travel.hours(7 * 24)
    assert digest.send_due() == 1
    assert [m.to for m in mail.outbox] == [["frank@example.com"]]


@pytest.mark.parametrize("status", ["draft", "open", "paid", "uncollectible", "void", None])
def test_it_counts_only_paid_money(travel: Travel, finance, sim, status):
    before = digest.build(finance, travel.now()).accounts[0]
    wednesday_last_week = int(datetime(2026, 6, 3, 9, tzinfo=UTC).timestamp())
    invoice = Invoice("in_1digeststatus", 77_777, wednesday_last_week, "auto", "auto-topup")
    invoice.status = status
    sim.account(before.account.id).invoices.append(invoice)
    after = digest.build(finance, travel.now()).accounts[0]
    assert before.topups is not None and after.topups is not None
    assert before.invoices is not None and after.invoices is not None
    added = [t for t in after.topups if t not in before.topups]
    # A paid top-up is listed once, as a top-up; an unpaid one is an invoice that took nothing.
    if status == "paid":
        assert added == [(datetime(2026, 6, 3, 9, tzinfo=UTC), Decimal("777.77"), "automatic")]
        assert after.invoices == before.invoices
    else:
        assert added == []
        assert after.invoices == (before.invoices[0] + 1, before.invoices[1])


def test_it_counts_a_topup_once(travel: Travel, finance, sim):
    account = sim.account(ACCOUNT_ID)
    account.invoices.clear()
    wednesday_last_week = int(datetime(2026, 6, 3, 9, tzinfo=UTC).timestamp())
    account.invoices.append(Invoice("in_1fifty", 5_000, wednesday_last_week, "manual", "api"))
    subscribe(finance)
    digest.send_due()
    sent = next(m for m in mail.outbox if m.to == ["frank@example.com"])
    assert isinstance(sent, EmailMultiAlternatives)
    production = sent.body.split("== Production ==")[1].split("==")[0]
    assert production.count("$50.00") == 1, production
    assert "Top-ups:" in production and "Wed 3 Jun  $50.00  one-off" in production
    assert "Other invoices: none (each top-up above is an invoice)" in production, production
    html = str(sent.alternatives[0][0])
    assert "Other invoices:" in html and "Invoices issued" not in html


def test_a_reader_without_topups_sees_every_invoice(travel: Travel, finance, sim):
    account = sim.account(ACCOUNT_ID)
    account.invoices.clear()
    wednesday_last_week = int(datetime(2026, 6, 3, 9, tzinfo=UTC).timestamp())
    account.invoices.append(Invoice("in_1fifty", 5_000, wednesday_last_week, "manual", "api"))
    finance.user_permissions.clear()
    for group in finance.groups.all():
        group.permissions.remove(*group.permissions.filter(codename="view_topups"))
    finance = type(finance).objects.get(pk=finance.pk)
    week = digest.build(finance, travel.now()).accounts[0]
    assert week.topups is None
    assert week.invoices == (1, Decimal("50.00"))
