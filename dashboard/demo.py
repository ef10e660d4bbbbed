"""Demo-mode logins: shown on the login page and created by ``manage.py demo_users``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str
    superuser: bool = False


# Readable on purpose: they are printed and shown on the login page, and only ever exist in
# demo mode (the command refuses elsewhere unless forced).
DEMO_USERS = (
    DemoUser("lead", "demo-lead-2026", "Team lead"),
    DemoUser("finance", "demo-finance-2026", "Finance staff"),
    DemoUser("admin", "demo-admin-2026", "Billing admin", superuser=True),
)
