"""The dashboard's own tables.

Balances, invoices and usage live at Cloudflare and are read through ``billing_api``. Here
are who may see which account, and the permissions that roles (groups) are made of.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


def account_choices() -> list[tuple[str, str]]:
    return [(key, f"{name} ({key})") for key, name in settings.BILLING_ACCOUNTS.items()]


class Dashboard(models.Model):
    """Holds the dashboard's permissions; it has no rows.

    Roles are groups of these (made by a migration): Team lead, Finance, Billing admin.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_overview", "See balance, runway and spend"),
            ("view_usage", "See usage history"),
            ("view_invoices", "See invoices and the upcoming invoice"),
            ("view_topups", "See top-up history"),
            ("export_data", "Download exports (CSV)"),
            ("create_topup", "Make a one-off top-up"),
            ("change_auto_topup", "Change or delete the auto top-up rule"),
            ("change_spending_limit", "Set or remove the spending limit"),
        ]


class AccountAccess(models.Model):
    """A user may see this Cloudflare account. Superusers see every configured account."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_access"
    )
    account_id = models.CharField(max_length=32, choices=account_choices)
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "account access"
        verbose_name_plural = "account access"
        constraints = [
            models.UniqueConstraint(fields=["user", "account_id"], name="one_grant_per_account")
        ]

    def __str__(self) -> str:
        name = settings.BILLING_ACCOUNTS.get(self.account_id, "unconfigured account")
        return f"{self.user} may see {name} ({self.account_id})"
