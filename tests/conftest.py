"""Personas, a fresh simulator per test, and an empty cache per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.test import Client

from billing_api.simulator import DEFAULT_ACCOUNT_ID, Simulator
from dashboard import billing, roles
from dashboard.models import AccountAccess

ACCOUNT_ID = DEFAULT_ACCOUNT_ID
OVERVIEW_URL = f"/accounts/{ACCOUNT_ID}/"
#: The second demo account (the simulator seeds it with no card and no auto top-up).
OTHER_ACCOUNT_ID = "5a1b2c3d4e5f60718293a4b5c6d7e8f9"
PASSWORD = "correct horse battery staple"
# The simulator's clock stands still in tests: no hour ends, so no balance burns down and no
# auto top-up fires between setting up a state and reading the page.
SIMULATOR_NOW = datetime(2026, 6, 10, 12, 30, tzinfo=UTC).timestamp()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # PBKDF2's deliberate slowness protects stored passwords, not test databases.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _dashboard_simulator(settings) -> Iterator[Simulator]:
    """The app's simulator for this test only: state and faults never leak between tests.

    Autouse under its own name, so that a test module's own ``sim`` fixture cannot replace it.
    """
    # A fault answers at once instead of after the client's backoff.
    settings.BILLING_API_MAX_RETRIES = 0
    simulator = Simulator(
        seed=0, clock=lambda: SIMULATOR_NOW, accounts=tuple(settings.BILLING_ACCOUNTS)
    )
    billing.use_simulator(simulator)
    yield simulator
    billing.use_simulator(None)


@pytest.fixture
def sim(_dashboard_simulator: Simulator) -> Simulator:
    """The simulator the dashboard is talking to in this test."""
    return _dashboard_simulator


def make_user(username: str, role: str | None, accounts: list[str] | None = None) -> User:
    """A user with a role (a group) granted ``accounts`` (default: every configured one)."""
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    if role == roles.BILLING_ADMIN:
        user.is_staff = True
        user.save()
    for account_id in settings.BILLING_ACCOUNTS if accounts is None else accounts:
        AccountAccess.objects.create(user=user, account_id=account_id)
    return user


@pytest.fixture
def lead(db) -> User:
    """Lena, the team lead: looks at spend, changes nothing."""
    return make_user("lena", roles.TEAM_LEAD)


@pytest.fixture
def finance(db) -> User:
    """Frank, finance staff: also invoices, exports and top-ups."""
    return make_user("frank", roles.FINANCE)


@pytest.fixture
def admin(db) -> User:
    """Ada, the billing admin: everything, and users in Django's admin."""
    return make_user("ada", roles.BILLING_ADMIN)


@pytest.fixture
def nobody(db) -> User:
    """Nora has a login and the accounts, but no role yet."""
    return make_user("nora", None)


@pytest.fixture
def outsider(db) -> User:
    """Oscar is finance staff for another account only."""
    return make_user("oscar", roles.FINANCE, accounts=[OTHER_ACCOUNT_ID])


@pytest.fixture
def lead_client(client: Client, lead: User) -> Client:
    client.force_login(lead)
    return client
