"""manage.py demo_users: the demo logins, created idempotently, demo mode only."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from dashboard.models import AccountAccess

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("demo_users", *args, stdout=out)
    return out.getvalue()


def test_it_creates_the_demo_users_and_prints_their_logins():
    output = run()
    assert "lead" in output and "demo-lead-2026" in output
    assert "finance" in output and "demo-finance-2026" in output
    assert "admin" in output and "demo-admin-2026" in output
    assert "http://127.0.0.1:8000/" in output
    assert authenticate(username="finance", password="demo-finance-2026") is not None


def test_it_gives_each_demo_user_a_role_and_accounts_and_nobody_superuser():
    run()
    roles = {u.username: [g.name for g in u.groups.all()] for u in User.objects.all()}
    assert roles == {"lead": ["Team lead"], "finance": ["Finance"], "admin": ["Billing admin"]}
    assert not User.objects.filter(is_superuser=True).exists()
    assert User.objects.get(username="admin").is_staff
    assert not User.objects.get(username="finance").is_staff
    granted = AccountAccess.objects.filter(user__username="lead").count()
    assert granted == 2, "the lead sees two of the three demo accounts"
    assert AccountAccess.objects.filter(user__username="finance").count() == 3


def test_it_gives_each_demo_user_an_address_so_the_digest_can_be_tried():
    """The digest goes only to the user's own address: without one, demo mode could not show it."""
    run()
    addresses = dict(User.objects.values_list("username", "email"))
    assert addresses == {
        "lead": "lead@example.com",
        "finance": "finance@example.com",
        "admin": "admin@example.com",
    }


def test_it_is_idempotent_and_resets_the_passwords():
    run()
    lead = User.objects.get(username="lead")
    lead.set_password("changed")
    lead.save()
    run()
    assert User.objects.filter(username__in=["lead", "finance", "admin"]).count() == 3
    assert User.objects.count() == 3
    assert authenticate(username="lead", password="demo-lead-2026") is not None


def test_it_refuses_outside_demo_mode(settings):
    settings.DEMO_MODE = False
    with pytest.raises(CommandError, match="Not in demo mode"):
        run()
    assert not User.objects.exists()


def test_it_creates_them_outside_demo_mode_when_forced(settings):
    settings.DEMO_MODE = False
    output = run("--force")
    assert "demo-admin-2026" in output
    assert User.objects.count() == 3


def test_it_prints_the_address_it_is_given():
    assert "http://127.0.0.1:8021/" in run("--url", "http://127.0.0.1:8021/")


def test_it_gives_each_demo_account_a_few_alert_rules_once():
    from dashboard.models import AlertRule

    run()
    per_account = len(settings.BILLING_ACCOUNTS)
    assert AlertRule.objects.count() == 3 * per_account
    run()
    assert AlertRule.objects.count() == 3 * per_account
