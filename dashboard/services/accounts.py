"""The accounts: those configured (``BILLING_ACCOUNTS``), and those a user is granted."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User

from dashboard.models import AccountAccess

GRANTED = "_dashboard_granted_accounts"


@dataclass(frozen=True)
class Account:
    id: str
    name: str


def configured_accounts() -> list[Account]:
    return [Account(key, name) for key, name in settings.BILLING_ACCOUNTS.items()]


def accounts_for(user: User | AnonymousUser) -> list[Account]:
    """The configured accounts this user may see, in configured order. The grants are read once
    per user object, as Django keeps permissions."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return configured_accounts()
    granted: frozenset[str] | None = getattr(user, GRANTED, None)
    if granted is None:
        found = AccountAccess.objects.filter(user=user).values_list("account_id", flat=True)
        granted = frozenset(found)
        setattr(user, GRANTED, granted)
    return [account for account in configured_accounts() if account.id in granted]
