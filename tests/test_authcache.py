"""A user read once with their permissions and grants, shared (dashboard/authcache.py).

What is counted: the SQL queries that read users, permissions or grants while a page is
served, and what each page answers after a change (a refusal must come at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from dashboard import authcache, roles
from dashboard.models import AccountAccess
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, PASSWORD

USAGE_URL = f"/accounts/{ACCOUNT_ID}/usage/"
TABLES = ("auth_user", "auth_permission", "auth_group", "dashboard_accountaccess")


def auth_queries(client: Client, url: str = OVERVIEW_URL) -> tuple[int, list[str]]:
    """The page's status and the queries it made of users, permissions and grants."""
    with CaptureQueriesContext(connection) as captured:
        status = client.get(url).status_code
    return status, [q["sql"] for q in captured if any(f'"{t}' in q["sql"] for t in TABLES)]


def auth_cache(result: str) -> float:
    value = REGISTRY.get_sample_value("dashboard_auth_cache_total", {"result": result})
    return value or 0.0


@pytest.fixture(autouse=True)
def _auth_cache_on(settings) -> None:
    settings.AUTH_CACHE_SECONDS = 60
    settings.PAGE_CACHE_SECONDS = 0  # every view runs its checks


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs on the local cache and on the real Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_cache")
    return str(request.param)


def two_sessions(user: User) -> tuple[Client, Client]:
    """The user logged in twice (two browsers), each page seen once (snapshot taken)."""
    one, two = Client(), Client()
    for client in (one, two):
        assert client.login(username=user.username, password=PASSWORD)
        assert client.get(OVERVIEW_URL).status_code == 200
    return one, two


def test_a_page_reads_no_user_permission_or_grant_once_the_user_was_read(backend, lead):
    client = Client()
    assert client.login(username=lead.username, password=PASSWORD)
    status, first = auth_queries(client)
    assert status == 200
    # Read once: the user, their own and their groups' permissions, their grants.
    assert len(first) == 4, first
    hits = auth_cache("hit")
    for url in (OVERVIEW_URL, USAGE_URL, OVERVIEW_URL):
        status, queries = auth_queries(client, url)
        assert status == 200 and queries == []
    assert auth_cache("hit") == hits + 3


def test_another_session_of_the_same_user_shares_it(lead):
    one, two = two_sessions(lead)
    assert auth_queries(two) == (200, [])


# ------------------------------------------------------------------ changes end it at once


Change = Callable[[User], None]


def revoke_grant(user: User) -> None:
    AccountAccess.objects.filter(user=user, account_id=ACCOUNT_ID).delete()


def leave_group(user: User) -> None:
    user.groups.clear()


def group_loses_permission(user: User) -> None:
    group = Group.objects.get(name=roles.TEAM_LEAD)
    group.permissions.remove(Permission.objects.get(codename="view_overview"))


def deactivate(user: User) -> None:
    user.is_active = False
    user.save()


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
    from tests.conftest import make_user

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


def test_a_snapshot_read_before_a_change_commits_is_not_used(
    lead, django_capture_on_commit_callbacks
):
    client = Client()
    assert client.login(username=lead.username, password=PASSWORD)
    assert client.get(OVERVIEW_URL).status_code == 200
    key = authcache._user_key(lead.pk)
    before = cache.get(key)
    assert before is not None
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        revoke_grant(lead)
        # Another process reads the user between the change and its commit: it does not see
        # the change yet (it is not committed), and keeps what it read under the generation
        # that is current now.
        cache.set(
            key,
            authcache._Snapshot(
                cache.get(authcache.GENERATION_KEY), before.read_at, before.user_blob
            ),
        )
    assert client.get(OVERVIEW_URL).status_code == 404


def test_a_change_the_orm_does_not_signal_is_seen_when_the_snapshot_expires(settings, lead):
    settings.AUTH_CACHE_SECONDS = 1
    client = Client()
    assert client.login(username=lead.username, password=PASSWORD)
    assert client.get(OVERVIEW_URL).status_code == 200
    # QuerySet.update() sends no signal: the snapshot does not know of it...
    User.objects.filter(pk=lead.pk).update(is_active=False)
    assert client.get(OVERVIEW_URL).status_code == 200
    # ...until it expires.
    time.sleep(1.1)
    assert client.get(OVERVIEW_URL).status_code == 302


def test_turned_off_it_reads_every_time(settings, lead):
    settings.AUTH_CACHE_SECONDS = 0
    client = Client()
    assert client.login(username=lead.username, password=PASSWORD)
    for _ in range(2):
        status, queries = auth_queries(client)
        assert status == 200 and len(queries) == 4


def test_a_generation_started_elsewhere_at_the_same_moment_keeps_nothing(lead, monkeypatch):
    client = Client()
    assert client.login(username=lead.username, password=PASSWORD)
    cache.delete(authcache.GENERATION_KEY)
    monkeypatch.setattr(cache, "add", lambda *args, **kwargs: False)
    assert client.get(OVERVIEW_URL).status_code == 200
    assert cache.get(authcache._user_key(lead.pk)) is None


def test_a_cleared_cache_starts_a_new_generation(lead):
    client = Client()
    assert client.login(username=lead.username, password=PASSWORD)
    assert client.get(OVERVIEW_URL).status_code == 200
    cache.clear()
    status, queries = auth_queries(client)
    assert status == 200 and len(queries) == 4
    assert cache.get(authcache.GENERATION_KEY) is not None
    assert auth_queries(client) == (200, [])
