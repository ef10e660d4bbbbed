"""Personas, a fresh simulator per test, and an empty cache per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from billing_api.simulator import DEFAULT_ACCOUNT_ID, Simulator
from dashboard import billing

ACCOUNT_ID = DEFAULT_ACCOUNT_ID
OVERVIEW_URL = f"/accounts/{ACCOUNT_ID}/"
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
    simulator = Simulator(seed=0, clock=lambda: SIMULATOR_NOW)
    billing.use_simulator(simulator)
    yield simulator
    billing.use_simulator(None)


@pytest.fixture
def sim(_dashboard_simulator: Simulator) -> Simulator:
    """The simulator the dashboard is talking to in this test."""
    return _dashboard_simulator


def _user(username: str, *, superuser: bool = False) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
    if superuser:
        user.is_staff = user.is_superuser = True
        user.save()
    return user


@pytest.fixture
def lead(db) -> User:
    """Lena, the team lead: looks at spend, changes nothing."""
    return _user("lena")


@pytest.fixture
def finance(db) -> User:
    """Frank, finance staff."""
    return _user("frank")


@pytest.fixture
def admin(db) -> User:
    """Ada, the billing admin."""
    return _user("ada", superuser=True)


@pytest.fixture
def lead_client(client: Client, lead: User) -> Client:
    client.force_login(lead)
    return client
