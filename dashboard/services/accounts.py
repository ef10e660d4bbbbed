"""The accounts: those configured (``BILLING_ACCOUNTS``), and those a user is granted."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.db.models import CharField, Q, Value

from dashboard.models import AccountAccess

GRANTED = "_dashboard_granted_accounts"
#: Where Django's ModelBackend keeps a user's permissions for the request.
PERMISSIONS = "_perm_cache"
#: Marks the grants among the permission rows of :func:`read_rights` (no app label has a #).
_GRANT = "#grant"


@dataclass(frozen=True)
class Account:
    id: str
    name: str


def configured_accounts() -> list[Account]:
    return [Account(key, name) for key, name in settings.BILLING_ACCOUNTS.items()]


def read_rights(user: User) -> None:
    """Keeps on ``user`` their permissions (their own and their roles', "app.codename") and
    their granted accounts, read in one query: every page checks both."""
    permissions = Permission.objects.all()
    if not user.is_superuser:
        permissions = permissions.filter(Q(user=user) | Q(group__user=user))
    grants = AccountAccess.objects.filter(user=user)
    rows = (
        permissions.values_list("content_type__app_label", "codename")
        .order_by()
        .union(
            grants.values_list(Value(_GRANT, output_field=CharField()), "account_id").order_by(),
            all=True,
        )
        .order_by()
    )
    found: set[str] = set()
    granted: set[str] = set()
    for first, second in rows:
        if first == _GRANT:
            granted.add(second)
        else:
            found.add(f"{first}.{second}")
    setattr(user, PERMISSIONS, found)
    setattr(user, GRANTED, frozenset(granted))


def accounts_for(user: User | AnonymousUser) -> list[Account]:
    """The configured accounts this user may see, in configured order, read once per user
    object (with the permissions), as Django keeps permissions."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return configured_accounts()
    if not hasattr(user, GRANTED):
        read_rights(user)
    granted: frozenset[str] = getattr(user, GRANTED)
    return [account for account in configured_accounts() if account.id in granted]
