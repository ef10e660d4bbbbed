"""Demo-mode logins: shown on the login page and created by ``manage.py demo_users``."""

from __future__ import annotations

from dataclasses import dataclass

from dashboard import roles


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    #: Indexes into the configured accounts this user is granted; None: all of them.
    accounts: tuple[int, ...] | None = None


# Readable on purpose: shown on the login page, and only in demo mode unless forced.
DEMO_USERS = (
    # Granted two of the three demo accounts, to show that grants limit what one sees.
    DemoUser("lead", "demo-lead-2026", roles.TEAM_LEAD, accounts=(0, 1)),
    DemoUser("finance", "demo-finance-2026", roles.FINANCE),
    DemoUser("admin", "demo-admin-2026", roles.BILLING_ADMIN),
)
