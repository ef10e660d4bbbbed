"""Who is logged in and what they may do is read afresh on every page: a change to a user,
a role or a grant is obeyed at once by every session, and sessions (``cached_db`` with
Redis, as in production) survive a cache that lost them and end at once on logout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.cache import cache
from django.test import Client

from dashboard import roles
from dashboard.models import AccountAccess
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, PASSWORD, make_user

AUTO_TOPUP_URL = f"/accounts/{ACCOUNT_ID}/auto-top-up/"


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs on the local cache and on the real Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_cache")
    return str(request.param)


def two_sessions(user: User) -> tuple[Client, Client]:
    """The user logged in twice (two browsers), each having seen the overview once."""
    one, two = Client(), Client()
    for client in (one, two):
        assert client.login(username=user.username, password=PASSWORD)
        assert client.get(OVERVIEW_URL).status_code == 200
    return one, two


Change = Callable[[User], None]


def revoke_grant(user: User) -> None:
    AccountAccess.objects.filter(user=user, account_id=ACCOUNT_ID).delete()


def leave_group(user: User) -> None:
    user.groups.clear()


def group_loses_permission(user: User) -> None:
    group = Group.objects.get(name=roles.TEAM_LEAD)
    group.permissions.remove(Permission.objects.get(codename="view_overview"))


def deactivate(user: User) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)  # no signal, as by SQL by hand


def delete_user(user: User) -> None:
    user.delete()


def delete_group(user: User) -> None:
    Group.objects.get(name=roles.TEAM_LEAD).delete()


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (revoke_grant, 404),
        (leave_group, 403),
        (group_loses_permission, 403),
        (delete_group, 403),
        # Logged out: the login page.
        (deactivate, 302),
        (delete_user, 302),
    ],
)
def test_a_change_is_obeyed_at_once_by_every_session(backend, lead, change: Change, status):
    one, two = two_sessions(lead)
    change(lead)
    assert one.get(OVERVIEW_URL).status_code == status
    assert two.get(OVERVIEW_URL).status_code == status


def test_a_new_grant_or_permission_is_seen_at_once(backend, db):
    user = make_user("nina", None, accounts=[])
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    assert client.get(OVERVIEW_URL).status_code == 404  # not granted this account
    AccountAccess.objects.create(user=user, account_id=ACCOUNT_ID)
    assert client.get(OVERVIEW_URL).status_code == 403  # granted, but without the permission
    user.user_permissions.add(Permission.objects.get(codename="view_overview"))
    assert client.get(OVERVIEW_URL).status_code == 200


def test_a_new_password_logs_the_other_sessions_out(backend, lead):
    one, two = two_sessions(lead)
    lead.set_password("a new and long passphrase")
    lead.save()
    assert one.get(OVERVIEW_URL).status_code == 302
    assert two.get(OVERVIEW_URL).status_code == 302


def test_a_logout_elsewhere_ends_the_session_at_once(backend, lead):
    one = Client()
    assert one.login(username=lead.username, password=PASSWORD)
    two = Client()
    two.cookies = one.cookies  # the same session in a second tab
    assert two.get(OVERVIEW_URL).status_code == 200
    assert one.post("/accounts/logout/").status_code == 302
    assert two.get(OVERVIEW_URL).status_code == 302


def test_a_session_the_cache_lost_is_read_from_the_database(redis_cache, lead):
    client = Client()
    assert client.login(username=lead.username, password=PASSWORD)
    assert client.get(OVERVIEW_URL).status_code == 200
    cache.clear()
    assert client.get(OVERVIEW_URL).status_code == 200


def test_a_change_made_here_shows_on_the_next_overview(backend, admin_client, sim):
    before = admin_client.get(OVERVIEW_URL)
    assert "When the balance falls below $7.50, add $1,000.00." not in before.text
    saved = admin_client.post(
        AUTO_TOPUP_URL, {"threshold": "7.50", "amount": "1000", "intent": "save"}
    )
    assert saved.status_code == 302
    assert (
        "When the balance falls below $7.50, add $1,000.00." in admin_client.get(OVERVIEW_URL).text
    )
