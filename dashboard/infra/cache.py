"""Django's Redis cache, for pages that must stay up when Redis does not: a Redis out of reach
is a miss for reads, nothing kept for ``set``, "not added" for ``add`` (no claim taken), and a
delete remembered until Redis answers again (so a logout sticks). Meanwhile billing reads use
the process's local-memory cache, so each process asks Cloudflare as a lone one would, and
Redis is not tried for ``retry_after`` seconds, so a page pays the timeout once. ``/readyz``
checks within :func:`errors_raised`."""

from __future__ import annotations

import contextvars
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dashboard.infra import metrics

logger = logging.getLogger(__name__)

#: Redis cannot be reached or did not answer in time. Anything else (a wrong command, a full
#: server) is a bug or a configuration error, and raised as usual.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)

#: Keys kept in the process's own cache while Redis is out of reach: the billing reads
#: (``dashboard.infra.upstream``), never sessions, whose logout in one process would live on
#: in another's copy.
LOCAL_PREFIXES = ("billing:",)
LOCAL_MAX_ENTRIES = 5_000

#: Keys a process failed to delete and still has to, at most this many (oldest dropped).
MAX_PENDING_DELETES = 10_000

_strict: contextvars.ContextVar[bool] = contextvars.ContextVar("cache_strict", default=False)


@contextmanager
def errors_raised() -> Iterator[None]:
    """Within it, the cache raises what it cannot do (for ``/readyz``, which must see it)."""
    token = _strict.set(True)
    try:
        yield
    finally:
        _strict.reset(token)


@dataclass
class _Outage:
    """What one process knows of one Redis: shared by the threads (each has its own backend)."""

    guard: threading.Lock = field(default_factory=threading.Lock)
    skip_until: float = 0.0  # monotonic: until then, answer without trying Redis
    warned_at: float | None = None  # None while Redis answers; set by every failure
    unsaid: int = 0  # operations answered without Redis since the last warning
    pending_deletes: dict[str, None] = field(default_factory=dict)


# By location; dict.setdefault is atomic, so threads building their backends share one.
_outages: dict[str, _Outage] = {}


def forget_outages() -> None:
    """This process knows nothing of any Redis's past failures (for tests: each starts anew).
    Caches built before keep what they knew."""
    _outages.clear()


#: One redis-py client (and its pool of connections) per process and cache location.
_clients: dict[str, Redis] = {}
_clients_guard = threading.Lock()


class _OneClient(RedisCacheClient):
    """Django gives each thread a cache of its own with a connection pool, and builds a
    ``redis.Redis`` for every operation (0.1-0.2 ms of CPU, four per overview). One client
    per process serves every thread (redis-py's client and pool are thread-safe): a worker
    keeps the connections it uses at once, not one pool per thread (about 1 MiB less after
    make bench's viewers). ``REDIS_URL`` names one server."""

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._location = f"{servers!r}:{sorted(options.items())!r}"

    def get_client(self, key: Any = None, *, write: bool = False) -> Redis:
        # Every cache operation asks: the lock only while the one client is built.
        client = _clients.get(self._location)
        if client is None:
            with _clients_guard:
                client = _clients.get(self._location)
                if client is None:
                    client = _clients[self._location] = super().get_client(key, write=True)
        return client


class ResilientRedisCache(RedisCache):
    """Django's Redis cache, with a Redis that cannot be reached as a miss (see the module)."""

    retry_after: float = 5.0  # seconds after a failure without trying Redis
    warn_every: float = 60.0  # at most one warning per this many seconds, per process

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _OneClient
        self._outage = _outages.setdefault(str(server), _Outage())
        # One per process and Redis location (local-memory caches of one name share it).
        self._local = LocMemCache(
            f"redis-unreachable:{server}",
            {"KEY_PREFIX": self.key_prefix, "OPTIONS": {"MAX_ENTRIES": LOCAL_MAX_ENTRIES}},
        )

    def unreachable(self) -> bool:
        """Redis failed a moment ago: callers with a way round it (the lock) should take it."""
        return not _strict.get() and time.monotonic() < self._outage.skip_until

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._run("get", [key], lambda c: c.get(key, default, version), default)[0]

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        keys = list(keys)
        return self._run("get_many", keys, lambda c: c.get_many(keys, version), {})[0]

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return bool(self._run("has_key", [key], lambda c: c.has_key(key, version), False)[0])

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._run("set", [key], lambda c: c.set(key, value, timeout, version), None)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return bool(
            self._run("add", [key], lambda c: c.add(key, value, timeout, version), False)[0]
        )

    def delete(self, key: Any, version: int | None = None) -> bool:
        done, reached = self._run("delete", [key], lambda c: c.delete(key, version), False)
        if not reached:
            self._remember_deletes([self.make_and_validate_key(key, version)])
        return bool(done)

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        keys = list(keys)
        _, reached = self._run("delete_many", keys, lambda c: c.delete_many(keys, version), None)
        if not reached:
            self._remember_deletes([self.make_and_validate_key(key, version) for key in keys])

    def clear(self) -> None:
        """Deletes the keys under this cache's ``KEY_PREFIX`` only, not the whole database as
        Django does (FLUSHDB), which would wipe other dashboards' or test runs' sharing it."""
        if not self.key_prefix:
            super().clear()
            return
        client = self._cache.get_client(write=True)
        pattern = re.sub(r"([\\*?\[\]])", r"\\\1", self.key_prefix)  # glob characters escaped
        keys = client.scan_iter(match=f"{pattern}:*", count=1000)
        for batch in itertools.batched(keys, 1000):
            client.delete(*batch)

    def _run[T](
        self,
        operation: str,
        keys: list[Any],
        call: Callable[[BaseCache], T],
        fallback: T,
    ) -> tuple[T, bool]:
        """``call`` on Redis, or without it; with whether Redis was reached."""
        if self.unreachable():
            metrics.CACHE_UNAVAILABLE.labels(operation, "skipped").inc()
            with self._outage.guard:
                self._outage.unsaid += 1
        else:
            try:
                result = call(cast(RedisCache, super()))
            except UNREACHABLE as error:
                self.failed(operation, error)
                if _strict.get():
                    raise
            else:
                self._note_success()
                return result, True
        # Billing reads go to this process's own cache meanwhile; anything else misses.
        if all(isinstance(key, str) and key.startswith(LOCAL_PREFIXES) for key in keys):
            return call(self._local), False
        return fallback, False

    def failed(self, operation: str, error: Exception) -> None:
        """Notes a failure of ``operation`` (also seen by callers with their own client)."""
        metrics.CACHE_UNAVAILABLE.labels(operation, "error").inc()
        outage = self._outage
        now = time.monotonic()
        with outage.guard:
            outage.unsaid += 1
            outage.skip_until = now + self.retry_after
            if outage.warned_at is not None and now - outage.warned_at < self.warn_every:
                return
            outage.warned_at = now
            unsaid, outage.unsaid = outage.unsaid, 0
        # The class and redis' message (host and port, never the password of REDIS_URL).
        logger.warning(
            "the cache (Redis) cannot be reached: %s: %s; %d cache operations answered without "
            "it since the last warning (reads miss, writes are skipped, pages ask Cloudflare "
            "and the database); next warning in %g s at the earliest",
            type(error).__name__,
            error,
            unsaid,
            self.warn_every,
        )

    def _note_success(self) -> None:
        outage = self._outage
        if outage.warned_at is None:
            return
        with outage.guard:
            if outage.warned_at is None:
                return
            outage.warned_at = None
            pending = list(outage.pending_deletes)
            outage.pending_deletes.clear()
        # Redis is the one cache again; what was kept meanwhile would only go stale here.
        self._local.clear()
        logger.warning(
            "the cache (Redis) answers again; deleting the %d keys it could not delete meanwhile",
            len(pending),
        )
        if pending:
            try:
                self._cache.delete_many(pending)
            except UNREACHABLE as error:
                self._remember_deletes(pending)
                self.failed("delete_many", error)

    def _remember_deletes(self, keys: list[str]) -> None:
        outage = self._outage
        with outage.guard:
            outage.pending_deletes.update(dict.fromkeys(keys))
            while len(outage.pending_deletes) > MAX_PENDING_DELETES:
                del outage.pending_deletes[next(iter(outage.pending_deletes))]
