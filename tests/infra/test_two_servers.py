"""Two app servers, one Redis, one PostgreSQL: still one upstream budget, and no deadlock.

Each test starts, on free ports of 127.0.0.1, the standalone simulator and two separate
gunicorn masters (two workers each) with production settings, sharing this test's
PostgreSQL database and a Redis key prefix of its own; it stops them all at the end.
Claims are counts the simulator keeps (calls per endpoint) and what the pages say.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from dashboard import roles
from dashboard.infra import upstream
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, PASSWORD, SAFETY_TIMEOUT, make_user

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SIMULATOR_TOKEN = "two-servers-" + uuid.uuid4().hex
#: Servers start in a few seconds; this bounds it on a loaded machine.
START_TIMEOUT = 30.0
#: The overview's reads; the finance role sees every card.
OVERVIEW_ENDPOINTS = (
    "GET credit-balance",
    "GET usage-history",
    "GET spending-limit",
    "GET invoice-preview",
    # The attention list's open invoices: one cached read of the whole history, which for
    # the seeded account is two pages (HISTORY_PAGES upstream calls per cache period).
    "GET invoice-history",
)
HISTORY_PAGES = 2

# The servers read and write this test's database: its rows must be committed. A
# transactional test flushes every table after itself, the roles a migration made too:
# serialized_rollback puts them back.
# Five processes start and stop per test (each importing Django): more than the suite's
# per-test bound allows on a busy machine, so these have one of their own.
pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.timeout(150),
]


@pytest.fixture(autouse=True, scope="module")
def _roles_back_after(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    # Tests that get the database later need the roles the flush after the last test removed.
    yield
    with django_db_blocker.unblock():
        contents: str = getattr(connection, "_test_serialized_contents")  # noqa: B009
        connection.creation.deserialize_db_from_string(contents)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def database_url() -> str:
    db = connection.settings_dict
    assert db["ENGINE"] == "django.db.backends.postgresql", (
        "the two-server test needs PostgreSQL: run it with DATABASE_URL=postgres://..."
    )
    user = f"{db['USER']}@" if db["USER"] else ""
    return f"postgres://{user}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def server_env(**overrides: str) -> dict[str, str]:
    """Production settings against the simulator, this database and a Redis prefix."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CLOUDFLARE_", "BILLING_", "SECURE_", "GUNICORN", "WEB_"))
        and name not in ("DEBUG", "SECRET_KEY", "SECRET_KEY_FILE", "ALLOWED_HOSTS")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        CLOUDFLARE_API_TOKEN=SIMULATOR_TOKEN,
        CLOUDFLARE_ACCOUNT_ID=ACCOUNT_ID,
        BILLING_API_BASE_URL="http://127.0.0.1:9/client/v4",
        DEBUG="false",
        SECRET_KEY="two-servers-" + uuid.uuid4().hex + uuid.uuid4().hex,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        REDIS_URL=REDIS_URL,
        DATABASE_URL=database_url(),
        LOG_LEVEL="WARNING",
    )
    env.update(overrides)
    return env


class Process:
    """A process this test started, its output in a file, stopped by its own id."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        limit = time.monotonic() + timeout
        while not check():
            assert self.process.poll() is None, f"{self.name} exited:\n{self.output()}"
            assert time.monotonic() < limit, f"{what} never happened:\n{self.output()}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT: gunicorn's quick shutdown; the simulator stops on it too.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(SAFETY_TIMEOUT)
            except subprocess.TimeoutExpired:
                # Its session holds only what it started (a gunicorn master's workers).
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(SAFETY_TIMEOUT)
        self._log.close()


class Simulator:
    """The standalone simulator, steered through its admin endpoints."""

    def __init__(self, logs: Path, started: list[Process]) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.origin}/client/v4"
        args = [PYTHON, "-m", "billing_api.simulator", "--port", str(self.port), "--quiet"]
        args += ["--token", SIMULATOR_TOKEN, "--account", ACCOUNT_ID]
        self.process = Process("simulator", args, os.environ.copy(), logs)
        started.append(self.process)
        self.admin = httpx.Client(base_url=f"{self.origin}/__simulator/", timeout=SAFETY_TIMEOUT)
        self.process.wait_until(self._up, "the simulator answering", START_TIMEOUT)

    def _up(self) -> bool:
        try:
            return self.admin.get("info").status_code == 200
        except httpx.TransportError:
            return False

    def calls(self) -> Counter[str]:
        return Counter(self.admin.get("calls").json()["calls"])

    def reset_calls(self) -> None:
        self.admin.post("reset-calls").raise_for_status()

    def in_flight(self) -> Counter[str]:
        return Counter(self.admin.get("in-flight").json()["in_flight"])

    def fault(self, endpoint: str, kind: str, **params: Any) -> None:
        self.admin.post("faults", json={"endpoint": endpoint, "kind": kind, **params})
        assert endpoint in self.admin.get("faults").json()["faults"]

    def close(self) -> None:
        self.admin.close()


class Server:
    """One gunicorn master with its workers, on a port of its own."""

    def __init__(self, name: str, env: dict[str, str], logs: Path, started: list[Process]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [GUNICORN, "dashboard.wsgi:application", "--workers", "2"]
        args += ["--bind", f"127.0.0.1:{self.port}", "--graceful-timeout", "5"]
        self.process = Process(name, args, env, logs)
        started.append(self.process)

    def wait_up(self) -> None:
        self.process.wait_until(self._up, f"{self.process.name} answering", START_TIMEOUT)

    def _up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/accounts/login/", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def workers(self) -> set[int]:
        """The process ids of this master's workers now."""
        found = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                found.add(int(stat.parent.name))
        return found

    def client(self, cookies: httpx.Cookies | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, cookies=cookies, timeout=SAFETY_TIMEOUT)

    def log_in(self, username: str) -> httpx.Cookies:
        """Logs in through the login form, as a browser does; the session's cookies."""
        with self.client() as client:
            form = client.get("/accounts/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
            assert token, "no CSRF token in the login form"
            answer = client.post(
                "/accounts/login/",
                data={
                    "csrfmiddlewaretoken": token.group(1),
                    "username": username,
                    "password": PASSWORD,
                },
            )
            assert answer.status_code == 302, answer.text[:2000]
            return httpx.Cookies(client.cookies)


class Stack:
    def __init__(self, simulator: Simulator, a: Server, b: Server, prefix: str) -> None:
        self.simulator = simulator
        self.a = a
        self.b = b
        self.prefix = prefix
        self.redis = redis.Redis.from_url(REDIS_URL)

    def lock_key(self, name: str) -> str:
        return f"{self.prefix}:1:{upstream.cache_key(ACCOUNT_ID, name)}:lock"


@pytest.fixture(scope="module")
def static_root() -> Iterator[Path]:
    """Static files collected once, as production storage (hashed, compressed) needs them."""
    with tempfile.TemporaryDirectory(prefix="two-servers-static-") as path:
        env = {
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "BILLING_"))
            },
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "CLOUDFLARE_API_TOKEN": SIMULATOR_TOKEN,
            "CLOUDFLARE_ACCOUNT_ID": ACCOUNT_ID,
            "DEBUG": "false",
            "SECRET_KEY": "collectstatic-only-" + uuid.uuid4().hex,
            "STATIC_ROOT": path,
        }
        subprocess.run(
            [PYTHON, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=START_TIMEOUT,
        )
        yield Path(path)


def start_stack(static_root: Path, **settings: str) -> Iterator[Stack]:
    prefix = f"test-flight-{uuid.uuid4().hex}"
    started: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="two-servers-logs-") as logs_dir:
        logs = Path(logs_dir)
        stack: Stack | None = None
        simulator: Simulator | None = None
        try:
            simulator = Simulator(logs, started)
            env = server_env(
                BILLING_API_BASE_URL=simulator.base_url,
                CACHE_KEY_PREFIX=prefix,
                STATIC_ROOT=str(static_root),
                **settings,
            )
            # Both start at once (they import Django side by side), then both must answer.
            a = Server("server-a", env, logs, started)
            b = Server("server-b", env, logs, started)
            a.wait_up()
            b.wait_up()
            stack = Stack(simulator, a, b, prefix)
            yield stack
        finally:
            # Servers first: their database connections end before the test's flush.
            for process in reversed(started):
                process.stop()
            if simulator is not None:
                simulator.close()
            if stack is not None:
                for key in stack.redis.scan_iter(match=f"{prefix}:*"):
                    stack.redis.delete(key)
                stack.redis.close()


def finance_user(settings: Any) -> str:
    """A finance user the servers can log in: a password hash their settings accept."""
    user = make_user("fiona", roles.FINANCE, accounts=[ACCOUNT_ID])
    # Few iterations: the server verifies it at once, then upgrades it to its own count.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt(), iterations=1000)
    user.save()
    return user.username


@pytest.fixture
def shared_budget(static_root: Path, transactional_db: None) -> Iterator[Stack]:
    """A cache period of 2 s and 300 ms of latency on every endpoint."""
    yield from start_stack(static_root, BILLING_CACHE_SECONDS="2", BILLING_API_MAX_RETRIES="0")


#: Concurrent viewers, half on each server, each with its own HTTP connection.
VIEWERS = 16
LOAD_SECONDS = 4.0


def test_viewers_on_two_servers_cost_one_upstream_call_per_endpoint_per_cache_period(
    shared_budget: Stack, settings: Any
) -> None:
    stack = shared_budget
    username = finance_user(settings)
    # One login: its session is good on either server (one database, one Redis).
    session = stack.a.log_in(username)
    stack.simulator.fault("*", "latency", seconds=0.3)
    stack.simulator.reset_calls()
    statuses: Counter[int] = Counter()
    overviews = [0]
    failures: list[BaseException] = []
    guard = threading.Lock()
    start = threading.Barrier(VIEWERS + 1)

    def viewer(server: Server, stop_at: list[float]) -> None:
        try:
            with server.client(session) as client:
                start.wait(SAFETY_TIMEOUT)
                while time.monotonic() < stop_at[0]:
                    page = client.get(OVERVIEW_URL)
                    with guard:
                        statuses[page.status_code] += 1
                        overviews[0] += 'id="balance-card"' in page.text
        except BaseException as err:
            with guard:
                failures.append(err)

    stop_at = [math.inf]
    threads = [
        threading.Thread(target=viewer, args=(stack.a if i % 2 else stack.b, stop_at))
        for i in range(VIEWERS)
    ]
    for thread in threads:
        thread.start()
    start.wait(SAFETY_TIMEOUT)
    began, began_at = time.monotonic(), datetime.now(UTC)
    stop_at[0] = began + LOAD_SECONDS
    for thread in threads:
        thread.join(LOAD_SECONDS + 2 * SAFETY_TIMEOUT)
        assert not thread.is_alive(), "a viewer never finished"
    took, ended_at = time.monotonic() - began, datetime.now(UTC)
    calls = stack.simulator.calls()

    assert not failures, failures
    served = sum(statuses.values())
    assert statuses == {200: served}, statuses
    # Each answer is the overview itself (no redirect to the login, no error page).
    assert overviews[0] == served
    # The n-th call of an endpoint starts only once the (n-1)-th answer has been cached for
    # a whole period, so within `took` seconds there can be at most this many per endpoint.
    periods = math.floor(took / 2) + 1
    print(
        f"\n{VIEWERS} viewers on 2 servers x 2 workers, {served} pages in {took:.1f}s "
        f"({served / took:.0f}/s), cache period 2s: upstream calls {dict(calls)} "
        f"(at most {periods} each)"
    )
    for endpoint in OVERVIEW_ENDPOINTS:
        # The usage range is aligned to the hour: a new hour is a new key.
        bound = periods + (endpoint == "GET usage-history" and began_at.hour != ended_at.hour)
        if endpoint == "GET invoice-history":
            bound *= HISTORY_PAGES
        assert 1 <= calls[endpoint] <= bound, (endpoint, calls, periods)
    assert set(calls) <= set(OVERVIEW_ENDPOINTS), calls


#: The lock outlives a read (timeout 4 s, no retry) by a second.
API_TIMEOUT = 4
LOCK_SECONDS = 5


@pytest.fixture
def dying_worker(static_root: Path, transactional_db: None) -> Iterator[Stack]:
    yield from start_stack(
        static_root,
        BILLING_API_TIMEOUT=str(API_TIMEOUT),
        BILLING_API_MAX_RETRIES="0",
        BILLING_LOCK_SECONDS=str(LOCK_SECONDS),
        BILLING_PAGE_DEADLINE="0.5",
        BILLING_CACHE_SECONDS="60",
    )


def balance_card(client: httpx.Client) -> httpx.Response:
    return client.get(OVERVIEW_URL, params={"partial": "balance-card"})


def shows_balance(card: httpx.Response) -> bool:
    assert card.status_code == 200, card.text[:2000]
    return 'id="balance-card"' in card.text and "card-loading" not in card.text


def test_a_worker_killed_holding_the_lock_does_not_stop_the_other_server(
    dying_worker: Stack, settings: Any
) -> None:
    stack = dying_worker
    session = stack.a.log_in(finance_user(settings))
    lock_key = stack.lock_key("credit-balance")
    # The first balance call hangs (longer than the test), so its reader holds the lock.
    stack.simulator.fault("GET credit-balance", "hang", seconds=30, times=1)

    def ask_a() -> None:
        # The worker answering it may be the one killed below.
        with stack.a.client(session) as client, contextlib.suppress(httpx.TransportError):
            balance_card(client)

    asker = threading.Thread(target=ask_a, daemon=True)
    asker.start()
    stack.a.process.wait_until(
        lambda: (
            stack.redis.get(lock_key) is not None
            and stack.simulator.in_flight()["GET credit-balance"] == 1
        ),
        "a worker of server A holding the lock while its call hangs",
        SAFETY_TIMEOUT,
    )
    token = stack.redis.get(lock_key)
    assert isinstance(token, bytes), "the read ended before its worker could be killed"
    holder = int(token.decode().partition(":")[0])
    assert holder in stack.a.workers()
    os.kill(holder, signal.SIGKILL)
    killed_at = time.monotonic()
    asker.join(SAFETY_TIMEOUT)
    # Its lock outlives it: server B's page cannot have the balance yet, and says so.
    with stack.b.client(session) as client:
        assert stack.redis.pttl(lock_key) > 1000
        waiting = balance_card(client)
        assert waiting.status_code == 200 and "card-loading" in waiting.text
        # Once the lock expires, one of B's workers asks, and the page has its balance.
        limit = killed_at + LOCK_SECONDS + SAFETY_TIMEOUT
        while not shows_balance(balance_card(client)):
            assert time.monotonic() < limit, "server B never showed the balance"
            time.sleep(0.1)
    recovered_after = time.monotonic() - killed_at
    print(
        f"\nworker {holder} killed holding the lock; server B had the balance "
        f"{recovered_after:.1f}s later (lock TTL {LOCK_SECONDS}s)"
    )
    assert stack.simulator.calls()["GET credit-balance"] == 2
    assert stack.redis.get(lock_key) is None
    # Server A replaced its worker and serves the balance from the shared cache.
    with stack.a.client(session) as client:
        stack.a.process.wait_until(
            lambda: len(stack.a.workers()) == 2, "server A replacing its worker", START_TIMEOUT
        )
        assert shows_balance(balance_card(client))
    assert stack.simulator.calls()["GET credit-balance"] == 2
