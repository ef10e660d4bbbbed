"""``manage.py demo_users``: the demo logins, created or reset, then printed."""

from __future__ import annotations

from argparse import ArgumentParser
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from dashboard import roles
from dashboard.demo import DEMO_USERS
from dashboard.models import AccountAccess, AlertRule

DEFAULT_URL = "http://127.0.0.1:8000/"


class Command(BaseCommand):
    help = "Create the demo users (idempotent) and print their logins. Demo mode only."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="create them outside demo mode too (their passwords are public)",
        )
        parser.add_argument(
            "--url", default=DEFAULT_URL, help="where the dashboard listens, for the message"
        )

    def handle(
        self, *args: Any, force: bool = False, url: str = DEFAULT_URL, **options: Any
    ) -> None:
        if not settings.DEMO_MODE and not force:
            # Their passwords are public: never against a real Cloudflare account by accident.
            raise CommandError(
                "Not in demo mode (CLOUDFLARE_API_TOKEN is set), so no demo users were created: "
                "their passwords are public. Create real users with `manage.py createsuperuser`, "
                "or pass --force."
            )
        User = get_user_model()
        account_ids = list(settings.BILLING_ACCOUNTS)
        with transaction.atomic():
            for demo in DEMO_USERS:
                user, _ = User.objects.get_or_create(username=demo.username)
                # Reset every time, so the printed password is always the one that works.
                user.set_password(demo.password)
                # The digest goes to the user's own address only; demo mode prints emails.
                user.email = f"{demo.username}@example.com"
                user.is_active = True
                # Billing admins manage users in Django's admin; nobody is a superuser.
                user.is_staff = demo.role == roles.BILLING_ADMIN
                user.is_superuser = False
                user.save()
                user.groups.set([Group.objects.get(name=demo.role)])
                indexes = range(len(account_ids)) if demo.accounts is None else demo.accounts
                granted = [account_ids[i] for i in indexes if i < len(account_ids)]
                AccountAccess.objects.filter(user=user).exclude(account_id__in=granted).delete()
                for account_id in granted:
                    AccountAccess.objects.get_or_create(user=user, account_id=account_id)
            self.demo_alerts(account_ids)
        width = max(len(demo.username) for demo in DEMO_USERS)
        pwidth = max(len(demo.password) for demo in DEMO_USERS)
        self.stdout.write("Demo logins:")
        for demo in DEMO_USERS:
            self.stdout.write(f"  {demo.username:<{width}}  {demo.password:<{pwidth}}  {demo.role}")
        self.stdout.write(f"Open {url} and log in with one of them.")

    def demo_alerts(self, account_ids: list[str]) -> None:
        """A few alert rules for the Alerts page and the worker, on accounts that have none."""
        examples: list[dict[str, Any]] = [
            {"kind": AlertRule.Kind.AUTO_TOPUP_FAILED},
            {"kind": AlertRule.Kind.SPEND_SPIKE, "factor": Decimal(3)},
            {"kind": AlertRule.Kind.RUNWAY_BELOW, "days": 30},
        ]
        for account_id in account_ids:
            if AlertRule.objects.filter(account_id=account_id).exists():
                continue
            for example in examples:
                AlertRule.objects.create(
                    account_id=account_id,
                    emails="finance@example.com",
                    created_by="demo",
                    **example,
                )
