"""What a user may do and see, read for each request: permissions (their own and their
roles') and granted accounts, in one query, as Django's ModelBackend would answer."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission, User

from dashboard.services.accounts import accounts_for
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, make_user

pytestmark = pytest.mark.django_db


def fresh(user: User) -> User:
    """The user as the next request loads them: nothing kept from before."""
    return User.objects.get(pk=user.pk)


def test_a_role_and_a_single_permission_both_count_as_django_counts_them(finance):
    finance.user_permissions.add(Permission.objects.get(codename="manage_alerts"))
    user = fresh(finance)
    expected = ModelBackend().get_all_permissions(fresh(finance))
    assert user.get_all_permissions() == expected
    assert user.has_perm("dashboard.manage_alerts") and user.has_perm("dashboard.create_topup")
    assert not user.has_perm("dashboard.change_spending_limit")


def test_a_superuser_holds_every_permission_and_sees_every_account(db):
    root = User.objects.create_superuser("root", "root@example.com", "a-long-password-1")
    assert fresh(root).get_all_permissions() == ModelBackend().get_all_permissions(fresh(root))
    assert [a.id for a in accounts_for(fresh(root))] == list(settings.BILLING_ACCOUNTS)


def test_grants_and_permissions_come_from_one_query(outsider, django_assert_num_queries) -> None:
    user = fresh(outsider)
    with django_assert_num_queries(1):
        assert [a.id for a in accounts_for(user)] == [OTHER_ACCOUNT_ID]
        assert user.has_perm("dashboard.view_invoices")
        assert not user.has_perm("dashboard.change_auto_topup")


def test_a_removed_role_and_grant_hold_from_the_next_request(db):
    user = make_user("rita", "Finance", accounts=[ACCOUNT_ID])
    assert fresh(user).has_perm("dashboard.create_topup")
    user.groups.clear()
    user.account_access.all().delete()
    assert not fresh(user).has_perm("dashboard.create_topup")
    assert accounts_for(fresh(user)) == []


def test_a_user_without_role_or_grant_has_nothing(nobody):
    user = fresh(nobody)
    assert user.get_all_permissions() == set()
    assert [a.id for a in accounts_for(user)] == list(settings.BILLING_ACCOUNTS)
