"""The shared cache (Redis) as something pages can lose without going down with it.

Everything the dashboard keeps in Redis can be done without, at a cost:

* billing reads (:mod:`dashboard.upstream`): kept meanwhile in a local-memory cache of the
  process (:data:`LOCAL_PREFIXES`), so each process asks Cloudflare as a lone process would,
  once per key per cache period: the per-process single flight hands its answer over through
  it, and the cross-process lock falls back to that flight (see ``dashboard.upstream``);
* sessions (``cached_db``): a miss is read from the database, so logins and sessions carry
  on from PostgreSQL;
* ``/readyz`` must not be fooled: it checks inside :func:`errors_raised`, which lets the
  errors through.

So :class:`ResilientRedisCache` turns a Redis that cannot be reached (refused, reset, timed
out: redis' ``ConnectionError`` and ``TimeoutError``) into, per operation on a key that is
not a billing key (those go to the local-memory cache instead):

* ``get``/``get_many``/``has_key``: a miss (the caller recomputes or asks the database);
* ``set``/``set_many``/``touch``: nothing kept (the next read misses again);
* ``add``: ``False``, "not added": a caller that uses it as a claim must not go ahead as if
  it held one (the top-up check's claim is a billing key: claimed per process meanwhile);
* ``delete``/``delete_many``: nothing deleted. The key may still be there when Redis comes
  back with its data: a billing entry is refreshed after ``BILLING_CACHE_SECONDS`` anyway,
  and a session deleted then (a logout) has its row gone from the database already, but a
  process keeps the keys it failed to delete and deletes them as soon as Redis answers again;
* ``incr``/``decr``: the error is raised (counted and logged like the others; at once,
  without trying, while Redis failed a moment ago): a counter cannot pretend to count, and
  its caller decides what that means (login throttling counts in the database, not here).
  ``clear`` raises too: an operator's explicit act.

Timeouts on the sockets (``REDIS_TIMEOUT``) bound how long one try can take with a Redis that
does not answer. After a failure the process does not try Redis again for
:attr:`ResilientRedisCache.retry_after` seconds (a miss at once), so that a page of many cache
operations pays the timeout once, not once per operation. A warning is logged at most every
:attr:`ResilientRedisCache.warn_every` seconds per process, with the number of operations
answered without Redis since the last one (an outage must not flood the log), and each one
is counted in ``dashboard_cache_unavailable_total``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dashboard import metrics

logger = logging.getLogger(__name__)

#: What redis raises when the server cannot be reached or does not answer in time (socket
#: errors are raised as these). Anything else (a wrong command, a full server) is a bug or a
#: configuration error and is raised as usual.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)

#: Keys (as the dashboard names them, before the prefix) kept in a local-memory cache of the
#: process while Redis cannot be reached: the billing reads (``dashboard.upstream``), so that
#: the single flight hands its answer to the threads waiting for it, a failure is remembered
#: for ``BILLING_ERROR_CACHE_SECONDS``, and an answer is reused for
#: ``BILLING_CACHE_SECONDS``, per process, as in demo mode. Never sessions or login counters:
#: a session deleted (a logout) in one process would live on in another's copy.
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
    #: Until then (monotonic) the cache answers without trying Redis.
    skip_until: float = 0.0
    #: Redis could not be reached at the last try.
    down: bool = False
    warned_at: float | None = None
    #: Operations answered without Redis since the last warning.
    unsaid: int = 0
    pending_deletes: dict[str, None] = field(default_factory=dict)


_outages: dict[str, _Outage] = {}
_outages_guard = threading.Lock()


def _outage_of(location: str) -> _Outage:
    with _outages_guard:
        return _outages.setdefault(location, _Outage())


class ReusingRedisCacheClient(RedisCacheClient):
    """Django's Redis client maker, keeping one ``Redis`` object per connection pool.

    Django builds a new ``Redis`` object for every cache operation; each builds its table of
    response callbacks, which cost more than the operation itself on a warm page (a page
    makes several). A ``Redis`` object is safe to share between threads (each command takes
    a connection from the pool), so one per pool is enough.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}
        self._clients_guard = threading.Lock()

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(id(pool))
        if client is None:
            with self._clients_guard:
                client = self._clients.get(id(pool)) or super().get_client(key, write=write)
                self._clients[id(pool)] = client
        return client


class ResilientRedisCache(RedisCache):
    """Django's Redis cache, with a Redis that cannot be reached as a miss (see the module)."""

    #: Seconds after a failure during which Redis is not tried (every operation misses).
    retry_after: float = 5.0
    #: At most one warning per this many seconds, per process.
    warn_every: float = 60.0

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient
        self._outage = _outage_of(str(server))
        # One per process and Redis location (local-memory caches of one name share it).
        self._local = LocMemCache(
            f"redis-unreachable:{server}",
            {
                "KEY_PREFIX": params.get("KEY_PREFIX", ""),
                "OPTIONS": {"MAX_ENTRIES": LOCAL_MAX_ENTRIES},
            },
        )

    # ------------------------------------------------------------ state, for upstream's lock

    def unreachable(self) -> bool:
        """Redis failed a moment ago: callers with a way round it (the lock) should take it."""
        return not _strict.get() and time.monotonic() < self._outage.skip_until

    def failed(self, operation: str, error: Exception) -> None:
        """Notes a failure of ``operation`` seen by a caller with its own client (the lock)."""
        self._note_failure(operation, error)

    # ------------------------------------------------------------ operations

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._run("get", [key], lambda c: c.get(key, default, version), default)[0]

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        keys = list(keys)
        found: dict[Any, Any] = self._run(
            "get_many", keys, lambda c: c.get_many(keys, version), {}
        )[0]
        return found

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return bool(self._run("has_key", [key], lambda c: c.has_key(key, version), False)[0])

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        self._run("set", [key], lambda c: c.set(key, value, timeout, version), None)

    def set_many(
        self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        failed: list[Any] = self._run(
            "set_many", list(data), lambda c: c.set_many(data, timeout, version), list(data)
        )[0]
        return failed

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return bool(
            self._run("add", [key], lambda c: c.add(key, value, timeout, version), False)[0]
        )

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return bool(self._run("touch", [key], lambda c: c.touch(key, timeout, version), False)[0])

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

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        if self.unreachable():
            self._count("incr", "skipped")
            raise RedisConnectionError("Redis could not be reached a moment ago")
        try:
            value: int = super().incr(key, delta, version)
        except UNREACHABLE as error:
            self._note_failure("incr", error)
            raise
        self._note_success()
        return value

    # decr() is incr(-delta) in Django's base class, so it raises the same way.

    def clear(self) -> None:
        """Deletes this cache's keys only (those under its ``KEY_PREFIX``).

        Django's Redis cache empties the whole database (FLUSHDB): with several dashboards,
        or a dashboard and a test run, sharing one Redis under different prefixes, one's
        ``clear()`` would wipe the others' sessions and caches. Without a prefix there is no
        telling its keys apart, and the whole database is emptied as Django does.
        """
        if not self.key_prefix:
            super().clear()
            return
        client = self._cache.get_client(write=True)
        pattern = self.key_prefix.replace("\\", "\\\\")
        for char in "*?[]":
            pattern = pattern.replace(char, "\\" + char)
        batch: list[Any] = []
        for key in client.scan_iter(match=f"{pattern}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)

    # ------------------------------------------------------------ the machinery

    def _run[T](
        self,
        operation: str,
        keys: list[Any],
        call: Callable[[BaseCache], T],
        fallback: T,
    ) -> tuple[T, bool]:
        """``call`` on Redis, or without it; with whether Redis was reached."""
        strict = _strict.get()
        if not strict and time.monotonic() < self._outage.skip_until:
            self._count(operation, "skipped")
            return self._without_redis(keys, call, fallback), False
        try:
            result = call(cast(RedisCache, super()))
        except UNREACHABLE as error:
            self._note_failure(operation, error)
            if strict:
                raise
            return self._without_redis(keys, call, fallback), False
        self._note_success()
        return result, True

    def _without_redis[T](self, keys: list[Any], call: Callable[[BaseCache], T], fallback: T) -> T:
        """Billing reads go to this process's own cache meanwhile; anything else misses."""
        if all(isinstance(key, str) and key.startswith(LOCAL_PREFIXES) for key in keys):
            return call(self._local)
        return fallback

    def _count(self, operation: str, reason: str) -> None:
        metrics.record_cache_unavailable(operation, reason)
        with self._outage.guard:
            self._outage.unsaid += 1

    def _note_failure(self, operation: str, error: Exception) -> None:
        metrics.record_cache_unavailable(operation, "error")
        outage = self._outage
        now = time.monotonic()
        with outage.guard:
            outage.unsaid += 1
            outage.down = True
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
        if not outage.down:
            return
        with outage.guard:
            if not outage.down:
                return
            outage.down = False
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
                self._note_failure("delete_many", error)

    def _remember_deletes(self, keys: list[str]) -> None:
        outage = self._outage
        with outage.guard:
            for key in keys:
                outage.pending_deletes[key] = None
            while len(outage.pending_deletes) > MAX_PENDING_DELETES:
                del outage.pending_deletes[next(iter(outage.pending_deletes))]
