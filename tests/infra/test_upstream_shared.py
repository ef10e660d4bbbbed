"""Single flight across processes: one process of all asks, the rest wait for its answer.

Against the real Redis (``TEST_REDIS_URL``, default the local one) under a key prefix of
this test's own, removed at the end. The other processes are real ones
(``python -m tests.shared_reader``) with their own Redis connections; their loader and this
process's count their calls in Redis and answer only when the test lets them, so every
claim here is about who asked, never about timing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from billing_api.client import BillingClient
from dashboard import settings as dashboard_settings
from dashboard.infra import upstream
from tests.conftest import ACCOUNT_ID, SAFETY_TIMEOUT, eventually, settings_module
from tests.shared_reader import calls_key, go_key, held_loader

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE = dashboard_settings.__file__
NAME = "shared-test"
KEY = upstream.cache_key(ACCOUNT_ID, NAME)
#: Long enough that no lock in these tests expires unless the test means it to.
LOCK_SECONDS = 60.0
#: A bound on another process starting (importing Django) on a busy machine.
START_TIMEOUT = 30.0

# Other processes start here, each importing Django: more than the suite's per-test bound
# allows on a busy machine.
pytestmark = pytest.mark.timeout(120)


class Shared:
    """The test's view of Redis: its prefix, a raw client, and the keys the dashboard uses."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.redis = redis.Redis.from_url(REDIS_URL)

    @property
    def lock_key(self) -> str:
        return f"{self.prefix}:1:{KEY}:lock"

    def calls(self) -> int:
        return int(self.redis.get(calls_key(self.prefix)) or 0)

    def let_answer(self) -> None:
        self.redis.set(go_key(self.prefix), 1)

    def lock_holder(self) -> int | None:
        """The process id in the lock's token, or None if nobody holds it."""
        token = self.redis.get(self.lock_key)
        if token is None:
            return None
        text = token.decode() if isinstance(token, bytes) else str(token)
        return int(text.partition(":")[0])

    def loader(self, *, fail: bool = False) -> Callable[[BillingClient], str]:
        return held_loader(self.redis, self.prefix, fail=fail)

    def read(self, *, fail: bool = False) -> upstream.Fetched[str]:
        return upstream.read(ACCOUNT_ID, NAME, self.loader(fail=fail))


@pytest.fixture
def shared(settings: Any, redis_cache: str) -> Iterator[Shared]:
    """The dashboard's cache is a Redis of its own prefix for this test (conftest's
    ``redis_cache``), then local again."""
    settings.BILLING_LOCK_SECONDS = LOCK_SECONDS
    state = Shared(redis_cache)
    try:
        yield state
    finally:
        # Reads of this process still held (a failed test) answer now, before the clean-up.
        state.let_answer()
        eventually(lambda: upstream.readers() == 0, "this process's reads ended")
        state.redis.close()


def kept_since(age: timedelta, value: str) -> None:
    """Puts ``value`` in the shared cache as an answer read ``age`` ago."""
    real_now = timezone.now
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: real_now() - age)
        assert upstream.read(ACCOUNT_ID, NAME, lambda client: value).value == value


class OtherProcess:
    """A dashboard process reading ``NAME`` through the same Redis (``tests.shared_reader``)."""

    def __init__(self, shared: Shared, *args: str, lock_seconds: float = LOCK_SECONDS) -> None:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("CLOUDFLARE_", "BILLING_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="dashboard.settings",
            REDIS_URL=REDIS_URL,
            CACHE_KEY_PREFIX=shared.prefix,
            BILLING_LOCK_SECONDS=str(lock_seconds),
            BILLING_API_MAX_RETRIES="0",
            LOG_LEVEL="DEBUG",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.shared_reader", NAME, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.log)

    def result(self) -> dict[str, Any]:
        """What the process read; fails the test if it does not finish in time."""
        try:
            out, _ = self.process.communicate(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail("the other process never finished its read")
        assert self.process.returncode == 0, "".join(self.log)
        result: dict[str, Any] = json.loads(out)
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(SAFETY_TIMEOUT)
        self._reader.join(SAFETY_TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def processes() -> Iterator[list[OtherProcess]]:
    """Every other process a test starts, stopped at the end whatever happened."""
    started: list[OtherProcess] = []
    yield started
    for process in started:
        process.stop()


class Reader:
    """A read in a thread of this process, joined with a bound."""

    def __init__(self, read: Any) -> None:
        self.result: upstream.Fetched[str] | None = None
        self._thread = threading.Thread(target=self._run, args=(read,), daemon=True)
        self._thread.start()

    def _run(self, read: Any) -> None:
        self.result = read()

    def join(self) -> upstream.Fetched[str]:
        self._thread.join(SAFETY_TIMEOUT)
        assert not self._thread.is_alive(), "the read never finished"
        assert self.result is not None
        return self.result


def waiting(other: OtherProcess) -> bool:
    """The other process found the read taken and is waiting for its answer (its log says)."""
    return other.logged("waiting for its answer")


def test_one_process_asks_and_the_others_wait_for_its_answer(shared, processes):
    leader = Reader(shared.read)
    eventually(lambda: shared.calls() == 1, "this process is asking")
    assert shared.lock_holder() == os.getpid()
    lock_ttl = shared.redis.pttl(shared.lock_key)
    assert 0 < lock_ttl <= LOCK_SECONDS * 1000
    others = [OtherProcess(shared), OtherProcess(shared)]
    processes.extend(others)
    eventually(
        lambda: all(waiting(other) for other in others), "both others are waiting", START_TIMEOUT
    )
    assert all(other.logged(f"being read by process {os.getpid()}") for other in others)
    shared.let_answer()
    mine = leader.join()
    answer = f"answer from process {os.getpid()}"
    assert mine.ok and mine.value == answer
    assert [other.result()["value"] for other in others] == [answer, answer]
    assert shared.calls() == 1
    # The owner gave its lock back: the next read after the cache period needs no wait.
    assert shared.lock_holder() is None


def test_the_owner_releases_its_lock(shared, caplog):
    shared.let_answer()
    with caplog.at_level(logging.DEBUG, logger="dashboard.infra.upstream"):
        got = shared.read()
    assert got.ok
    assert shared.lock_holder() is None
    assert shared.calls() == 1
    assert "took the shared lock" in caplog.text
    assert "released the shared lock" in caplog.text
    # Within the cache period nobody asks again, and no lock is taken for a cached answer.
    assert shared.read().value == got.value
    assert shared.calls() == 1


def test_a_lock_that_expired_during_a_slow_read_is_not_deleted_by_its_old_owner(
    shared: Shared, caplog: pytest.LogCaptureFixture
) -> None:
    shared.let_answer()
    taken_over = f"{os.getpid() + 1}:someone-else"
    inner = shared.loader()

    def slow_loader(client: BillingClient) -> str:
        # As if the lock expired while Cloudflare was slow and another process took it.
        shared.redis.set(shared.lock_key, taken_over)
        return inner(client)

    with caplog.at_level(logging.DEBUG, logger="dashboard.infra.upstream"):
        got = upstream.read(ACCOUNT_ID, NAME, slow_loader)
    assert got.ok
    assert shared.redis.get(shared.lock_key) == taken_over.encode()
    assert "expired before its read ended" in caplog.text


def test_a_lock_left_by_a_dead_owner_expires_and_the_next_reader_asks(shared, processes, settings):
    doomed = OtherProcess(shared, lock_seconds=1.0)
    processes.append(doomed)
    eventually(lambda: shared.calls() == 1, "the other process is asking", START_TIMEOUT)
    assert shared.lock_holder() == doomed.process.pid
    os.kill(doomed.process.pid, signal.SIGKILL)
    doomed.process.wait(SAFETY_TIMEOUT)
    # Its lock outlives it, for its TTL: a reader with a deadline gives up, saying so.
    assert shared.lock_holder() == doomed.process.pid
    late = upstream.gather({"it": shared.read}, deadline=0.05)["it"]
    assert late.pending and late.value is None
    assert shared.calls() == 1
    # A reader without a deadline waits out the TTL, then asks itself.
    shared.let_answer()
    got = Reader(shared.read).join()
    assert got.ok and got.value == f"answer from process {os.getpid()}"
    assert shared.calls() == 2
    assert shared.lock_holder() is None


def test_a_reader_past_its_deadline_gets_pending_and_the_answer_later(shared, processes):
    other = OtherProcess(shared)
    processes.append(other)
    eventually(lambda: shared.calls() == 1, "the other process is asking", START_TIMEOUT)
    got = upstream.gather({"it": shared.read}, deadline=0.05)["it"]
    assert got == upstream.Fetched(None, None, pending=True)
    shared.let_answer()
    theirs = other.result()
    assert theirs["value"] == f"answer from process {other.process.pid}"
    # The answer is in the shared cache now: this process gets it without asking.
    assert shared.read().value == theirs["value"]
    assert shared.calls() == 1


def test_after_the_cache_period_one_process_of_all_asks_again(shared, processes, settings):
    settings.BILLING_CACHE_SECONDS = 30
    # An answer from long ago, still kept for the "as of" notice but no longer fresh.
    kept_since(timedelta(hours=1), "old answer")
    leader = Reader(shared.read)
    eventually(lambda: shared.calls() == 1, "this process is asking")
    others = [OtherProcess(shared, "--reads", "3") for _ in range(3)]
    processes.extend(others)
    eventually(
        lambda: all(waiting(other) for other in others), "the others are waiting", START_TIMEOUT
    )
    shared.let_answer()
    answer = f"answer from process {os.getpid()}"
    assert leader.join().value == answer
    # Three reads each, and none of them asked again within the cache period.
    assert [other.result()["value"] for other in others] == [answer] * 3
    assert shared.calls() == 1


def test_an_answer_just_past_its_period_is_shown_by_all_while_one_process_refreshes_it(
    shared, processes, settings
):
    settings.BILLING_CACHE_SECONDS = 30
    kept_since(timedelta(seconds=40), "recent answer")
    # Answered at once; the refresh goes on in the background, held by the test.
    assert shared.read().value == "recent answer"
    eventually(lambda: shared.calls() == 1, "this process refreshes it in the background")
    others = [OtherProcess(shared) for _ in range(2)]
    processes.extend(others)
    # Their own refreshes wait for this one's lock in Redis; their reads did not wait.
    eventually(
        lambda: all(waiting(other) for other in others), "the others' refreshes wait", START_TIMEOUT
    )
    shared.let_answer()
    assert [other.result()["value"] for other in others] == ["recent answer"] * 2
    eventually(lambda: upstream.readers() == 0, "this process's refresh ended")
    assert shared.read().value == f"answer from process {os.getpid()}"
    assert shared.calls() == 1


def test_a_failure_is_shared_across_processes(shared, processes, settings):
    settings.BILLING_ERROR_CACHE_SECONDS = 60
    failing = OtherProcess(shared, "--fail")
    processes.append(failing)
    eventually(lambda: shared.calls() == 1, "the other process is asking", START_TIMEOUT)
    waiter = Reader(shared.read)
    shared.let_answer()
    theirs = failing.result()
    assert theirs["value"] is None and "having trouble" in theirs["error"]
    mine = waiter.join()
    assert mine.value is None and mine.error == theirs["error"]
    # Remembered for everyone during the error period: nobody asks again.
    assert shared.read().error == theirs["error"]
    assert shared.calls() == 1


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    """The settings module run afresh with ``env`` on top of demo mode."""
    for name in ("BILLING_LOCK_SECONDS", "BILLING_API_TIMEOUT", "BILLING_API_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_module()


def test_the_lock_outlives_the_longest_read_by_default(monkeypatch):
    # Three tries of 10 s, two waits of at most 10 s (a capped Retry-After), 5 s to spare.
    assert load_settings(monkeypatch).BILLING_LOCK_SECONDS == 55
    quick = load_settings(monkeypatch, BILLING_API_TIMEOUT="2", BILLING_API_MAX_RETRIES="0")
    assert quick.BILLING_LOCK_SECONDS == 7
    assert load_settings(monkeypatch, BILLING_LOCK_SECONDS="90").BILLING_LOCK_SECONDS == 90


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_lock_time_that_is_not_a_positive_number_stops_the_start(monkeypatch, value):
    with pytest.raises(ImproperlyConfigured, match="BILLING_LOCK_SECONDS"):
        load_settings(monkeypatch, BILLING_LOCK_SECONDS=value)
