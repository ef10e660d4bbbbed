"""Personas, a fresh simulator per test, an empty cache per test, and ways to hold reads.

Tests prove speed-related behaviour (parallel reads, deadlines, single flight) by what they
can observe, never by timing: a read is *held* by a latency fault far longer than any test
(``hold``) until the test calls ``sim.release()``, and ``sim.in_flight`` shows which reads are
out at once. Speed itself is shown by ``make bench-read``, which prints figures.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, TracebackType

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.db import connection
from django.test import Client
from procrastinate.contrib.django import app as jobs_app
from procrastinate.testing import InMemoryConnector

from billing_api.simulator import DEFAULT_ACCOUNT_ID, Simulator
from dashboard import roles, tasks
from dashboard import settings as dashboard_settings
from dashboard.infra import billing, clock, upstream
from dashboard.models import AccountAccess
from tests.webhook_receiver import Receiver

ACCOUNT_ID = DEFAULT_ACCOUNT_ID
OVERVIEW_URL = f"/accounts/{ACCOUNT_ID}/"
#: The second demo account (the simulator seeds it with no card and no auto top-up).
OTHER_ACCOUNT_ID = "5a1b2c3d4e5f60718293a4b5c6d7e8f9"
PASSWORD = "correct horse battery staple"
#: The Redis the tests that need one use, each under a key prefix of its own.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The simulator's clock stands still in tests: no hour ends, so no balance burns down and no
# auto top-up fires between setting up a state and reading the page.
SIMULATOR_NOW = datetime(2026, 6, 10, 12, 30, tzinfo=UTC).timestamp()
#: How long a test waits for something it expects at once before failing: a safety bound
#: for a loaded machine, never a claim about speed.
SAFETY_TIMEOUT = 10.0
#: The latency that holds a read until the test releases it: longer than any test runs.
HELD_SECONDS = 30.0


def eventually(check: Callable[[], bool], what: str, timeout: float = SAFETY_TIMEOUT) -> None:
    """Waits until ``check()`` holds; fails the test if it does not within ``timeout``."""
    limit = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < limit, f"never happened: {what}"
        time.sleep(0.002)


def at_once(count: int, work: Callable[[int, threading.Barrier], object]) -> None:
    """Runs ``work(n, barrier)`` in ``count`` threads released together, each on a database
    connection of its own (closed at the end); fails the test on any thread's error or one
    that never ends. ``work`` may wait on the barrier again to start a later step together."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(number: int) -> None:
        try:
            barrier.wait(SAFETY_TIMEOUT)
            work(number, barrier)
        except BaseException as err:  # noqa: BLE001 (reported below)
            failures.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY_TIMEOUT * 3)
    assert not any(thread.is_alive() for thread in threads), "a thread never ended"
    assert not failures, failures


def hold(sim: Simulator, endpoint: str, times: int | None = None) -> None:
    """Holds calls to ``endpoint`` (or ``"*"``) until ``sim.release()`` or the test ends."""
    sim.set_fault(endpoint, "latency", seconds=HELD_SECONDS, times=times)


def flight_users(account_id: str, name: str, params: Mapping[str, object] | None = None) -> int:
    """How many threads are in the single flight of one read (asking, or waiting for it)."""
    return upstream.readers(upstream.cache_key(account_id, name, params))


def wait_for_background_reads() -> None:
    """Waits until no upstream read is out, such as one that a page's deadline left behind.

    Such a read fills the cache when it ends; it must end inside the test that started it.
    """
    eventually(lambda: upstream.readers() == 0, "the background reads ended")


class ReleaseWhenInFlight:
    """Releases the simulator's held calls once ``expected`` calls are all in flight at once.

    Use it around a request whose calls are held (``hold``)::

        with ReleaseWhenInFlight(sim, {"GET credit-balance": 1, ...}) as watch:
            response = client.get(...)
        assert watch.all_at_once

    A watcher thread waits for ``sim.in_flight`` to show them (at most ``SAFETY_TIMEOUT``),
    then clears the faults, which releases the held calls whether or not it saw them.
    """

    def __init__(self, sim: Simulator, expected: Mapping[str, int]) -> None:
        self.all_at_once = False
        self._sim = sim
        self._expected = dict(expected)
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        self.all_at_once = self._sim.wait_for_in_flight(self._expected, SAFETY_TIMEOUT)
        self._sim.clear_faults()

    def __enter__(self) -> ReleaseWhenInFlight:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._thread.join(SAFETY_TIMEOUT + 1)
        assert not self._thread.is_alive(), "the watcher never ended"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # PBKDF2's deliberate slowness protects stored passwords, not test databases.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def run_on_fresh_sqlite(
    script: str, database: Path, *, timeout: float, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -c script`` in demo mode on a new SQLite file (as ``make run`` has it): none of
    this machine's database, Redis, Cloudflare or billing settings, plus ``env``."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DATABASE_URL", "REDIS_URL", "CLOUDFLARE_", "BILLING_"))
    }
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        env=kept
        | {"DATABASE_URL": f"sqlite:///{database}", "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
        | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def redis_cache(settings, _empty_cache: None) -> Iterator[str]:
    """The dashboard's cache is the real Redis (``REDIS_URL``), under a key prefix of this
    test's own, deleted at the end; then the local cache again. Sessions are read through it,
    as in production with ``REDIS_URL``. Yields the prefix."""
    local = settings.CACHES
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "dashboard.infra.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
        settings.CACHES = local


@pytest.fixture(autouse=True)
def jobs(request: pytest.FixtureRequest) -> Iterator[InMemoryConnector | None]:
    """The background jobs this test defers, kept in memory for it alone; a test marked
    ``real_jobs`` (workers in processes of their own) has them in PostgreSQL, emptied after.

    A job runs in a thread of the worker, on a database connection of its own: a test that
    runs jobs is transactional, so that they see what it wrote.
    """
    if request.node.get_closest_marker("real_jobs") is None:
        with jobs_app.replace_connector(InMemoryConnector()) as replaced:
            yield replaced.connector  # type: ignore[misc]
        return
    yield None
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE procrastinate_jobs, procrastinate_periodic_defers, procrastinate_workers "
            "CASCADE"
        )


def run_jobs() -> int:
    """Runs the jobs deferred so far, and those they defer, as ``alerts_worker --once`` does
    (without its check of the rules); how many ran. The engine waits in real time, the tests'
    clock travels: every job is made due, and the services say whether their time has come."""
    make_due()
    return tasks.run_due()


def make_due() -> None:
    """Every job waiting (for a retry, a follow-up's time) may run now."""
    if isinstance(jobs_app.connector, InMemoryConnector):
        for job in jobs_app.connector.jobs.values():
            if job["status"] == "todo":
                job["scheduled_at"] = None
        return
    with connection.cursor() as cursor:
        cursor.execute("UPDATE procrastinate_jobs SET scheduled_at = NULL WHERE status = 'todo'")


@pytest.fixture(scope="module")
def roles_back_after_module(django_db_setup, django_db_blocker) -> Iterator[None]:
    """For a module of transactional tests only: the flush after its last test removed the
    roles (and everything else a migration made); tests that get the database later need
    them, so they are put back from the database's serialized contents."""
    yield
    with django_db_blocker.unblock():
        contents: str = getattr(connection, "_test_serialized_contents")  # noqa: B009
        connection.creation.deserialize_db_from_string(contents)


@pytest.fixture(autouse=True)
def _dashboard_simulator(settings) -> Iterator[Simulator]:
    """The app's simulator for this test only: state and faults never leak between tests.

    Autouse under its own name, so that a test module's own ``sim`` fixture cannot replace it.
    At the end it releases whatever the test held and waits for the reads still out, so no
    read of this test runs on (holding a lock, filling the cache) into the next one.
    """
    # A fault answers at once instead of after the client's backoff.
    settings.BILLING_API_MAX_RETRIES = 0
    # A page sends as soon as its reads are in, so a long deadline costs nothing; it is a
    # safety bound that no test races. Tests of the deadline set their own, with held reads.
    settings.BILLING_PAGE_DEADLINE = SAFETY_TIMEOUT
    simulator = Simulator(
        seed=0, clock=lambda: SIMULATOR_NOW, accounts=tuple(settings.BILLING_ACCOUNTS)
    )
    billing.use_simulator(simulator)
    yield simulator
    simulator.clear_faults()
    wait_for_background_reads()
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


@pytest.fixture
def finance_client(finance: User) -> Client:
    # A client of its own, so that a test can hold several personas' sessions at once.
    client = Client()
    client.force_login(finance)
    return client


@pytest.fixture
def admin_client(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The dashboard's "now" where the simulator's clock stands."""
    now = datetime.fromtimestamp(SIMULATOR_NOW, UTC)
    monkeypatch.setattr(clock, "now", lambda: now)
    return now


@pytest.fixture
def current_mode() -> Iterator[Simulator]:
    """Cloudflare as it is today: spending-limit and topup/config writes answer 403."""
    simulator = Simulator(
        seed=0,
        mode="current",
        clock=lambda: SIMULATOR_NOW,
        accounts=tuple(settings.BILLING_ACCOUNTS),
    )
    billing.use_simulator(simulator)
    yield simulator
    billing.use_simulator(None)


# ---------------------------------------------------------------- alerts

SECONDS_PER_HOUR = 3600.0


class Travel:
    """The simulator's and the dashboard's clocks, moved on together."""

    def __init__(self, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sim = sim
        monkeypatch.setattr(clock, "now", self.now)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.sim.now(), UTC)

    def hours(self, count: float) -> None:
        self.sim.advance_clock(count * SECONDS_PER_HOUR)


@pytest.fixture
def travel(sim: Simulator, monkeypatch: pytest.MonkeyPatch, settings) -> Travel:
    # Every check reads Cloudflare afresh (the cache counts real seconds, not travelled ones).
    settings.BILLING_CACHE_SECONDS = 0
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    settings.DASHBOARD_URL = "https://spend.example.com"
    return Travel(sim, monkeypatch)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def no_auto_topup(sim: Simulator) -> None:
    """The default account without its auto top-up rule: nothing refills the balance."""
    billing.client_for(ACCOUNT_ID).delete_topup_config()


def settings_module() -> ModuleType:
    """``dashboard/settings.py`` run afresh under the environment as it is now (set the
    variables with monkeypatch first): what a new process with that environment would get."""
    spec = importlib.util.spec_from_file_location(
        "settings_under_test", dashboard_settings.__file__
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
