"""Reads from Cloudflare, shared: brief caching, one call for many askers, stale on failure.

Cloudflare allows an API token about 1,200 requests per 5 minutes, so upstream calls must
not grow with the number of people looking, nor with the number of processes serving them.
Every read goes through :func:`read`:

* a fresh cached answer (``BILLING_CACHE_SECONDS``) is used as is; one past its period by
  less than another period is used too while one read refreshes it in the background, so
  that a viewer waits for Cloudflare only after a quiet spell, not once every period;
* otherwise one thread per key asks Cloudflare while the others with the same key wait for
  its answer (single flight), so concurrent identical calls cost one upstream call;
* with a shared cache (Redis, ``REDIS_URL``) that thread first takes the key's lock in
  Redis (redis-py's ``Lock``), so that one process of all the processes and hosts asks while
  the others wait for the lock, no longer than the page's deadline, then find its answer in
  the cache. The lock expires after ``BILLING_LOCK_SECONDS`` (longer than a read can take,
  retries included), so a worker that dies holding it delays the others by at most that.
  Redis out of reach leaves each process its own single flight, as with the local-memory
  cache (demo mode), where the process is the whole world;
* a failure is remembered briefly (``BILLING_ERROR_CACHE_SECONDS``) so that an outage is
  not hammered by every page view, and the last good answer, kept for
  ``BILLING_STALE_SECONDS``, is returned with the error so the page can say "as of".

:func:`gather` runs several reads in parallel under one deadline, for pages with many cards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone
from redis.exceptions import LockNotOwnedError

from billing_api.client import BillingClient, request_id
from billing_api.errors import BillingError, BillingStatusError
from dashboard.infra import billing, metrics
from dashboard.infra.cache import UNREACHABLE as REDIS_UNREACHABLE
from dashboard.infra.cache import ResilientRedisCache

logger = logging.getLogger(__name__)

# Raised whenever what is kept changes shape, so that a new release never unpickles an old one.
CACHE_VERSION = 4


@dataclass(frozen=True)
class Fetched[T]:
    """What a read produced: a value (possibly stale), and the error if the last try failed."""

    value: T | None
    as_of: datetime | None
    error: str | None = None
    #: Set when the read had not finished by the page's deadline.
    pending: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None and self.error is None

    @property
    def stale(self) -> bool:
        return self.value is not None and self.error is not None


@dataclass(frozen=True)
class _Entry:
    """A good answer and when it was fetched, as kept in the cache."""

    value: Any
    fetched_at: datetime


@dataclass(frozen=True)
class _Failure:
    message: str
    failed_at: datetime


@dataclass
class _Flight:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


_flights: dict[str, _Flight] = {}
_flights_guard = threading.Lock()


def cache_key(account_id: str, name: str, params: Mapping[str, Any] | None = None) -> str:
    digest = ""
    if params:
        blob = json.dumps(params, sort_keys=True, default=str).encode()
        digest = ":" + hashlib.sha256(blob).hexdigest()[:16]
    return f"billing:v{CACHE_VERSION}:{account_id}:{name}{digest}"


def read[T](
    account_id: str,
    name: str,
    loader: Callable[[BillingClient], T],
    *,
    params: Mapping[str, Any] | None = None,
    wait: bool = True,
    refresh: bool = False,
) -> Fetched[T]:
    """Read ``name`` for ``account_id`` through the cache; never raises a BillingError.

    With ``wait=False`` a read that must ask Cloudflare is started in the background and
    answered ``pending`` at once (a failure remembered is answered as it is). ``refresh``
    ignores an answer past its period (the background read that replaces it).
    """
    key = cache_key(account_id, name, params)
    kept: _Entry | None = cache.get(key)
    entry = _fresh(kept)
    recent = None if refresh else _fresh(kept, periods=2)
    if entry is None and recent is not None:
        metrics.record_cache(name, hit=True)
        again = partial(read, account_id, name, loader, params=params, refresh=True)
        return _refresh(key, recent, again)
    if entry is None and getattr(_local, "cached_only", False):
        raise _NotKept
    metrics.record_cache(name, hit=entry is not None)
    if entry is not None:
        return Fetched(entry.value, entry.fetched_at)
    flight = _join(key)
    if not wait:
        return _start(key, flight, partial(read, account_id, name, loader, params=params))
    try:
        if not flight.lock.acquire(timeout=_wait_budget()):
            # Someone is already asking Cloudflare for this. Waiting past the page's deadline
            # would only hold a worker thread that other reads need: say it is on its way.
            return Fetched(None, None, pending=True)
        try:
            # Whoever held the lock before us may have just fetched it.
            cached: _Entry | None = cache.get(key)
            if _fresh(cached) is not None and cached is not None:
                return Fetched(cached.value, cached.fetched_at)
            failure: _Failure | None = cache.get(key + ":failed")
            if failure is not None:
                return _failed(cached, failure)
            shared = _shared_cache()
            if shared is None:
                return _fetch(key, account_id, name, loader, cached)
            return _fetch_shared(shared, key, account_id, name, loader)
        finally:
            flight.lock.release()
    finally:
        _leave(key, flight)


def _refresh(key: str, kept: _Entry, fn: Callable[[], Fetched[Any]]) -> Fetched[Any]:
    """``kept`` while ``fn`` replaces it in the background (unless a thread of this process
    is reading ``key`` already), with the error if Cloudflare failed a moment ago."""
    flight = _join(key)
    if flight.users > 1:
        _leave(key, flight)
        return Fetched(kept.value, kept.fetched_at)
    started = _start(key, flight, fn)
    return started if started.error else Fetched(kept.value, kept.fetched_at)


def _start(key: str, flight: _Flight, fn: Callable[[], Fetched[Any]]) -> Fetched[Any]:
    """``fn`` in the background, the flight held until it ends (so it is seen as out)."""
    failure: _Failure | None = cache.get(key + ":failed")
    if failure is not None:
        _leave(key, flight)
        return _failed(cache.get(key), failure)

    def run(rid: str | None) -> None:
        try:
            _before(None, fn, rid)
        finally:
            _leave(key, flight)

    _executor().submit(run, request_id.get())
    return Fetched(None, None, pending=True)


def _fetch[T](
    key: str,
    account_id: str,
    name: str,
    loader: Callable[[BillingClient], T],
    cached: _Entry | None,
) -> Fetched[T]:
    """Ask Cloudflare once; keep the answer for everyone, or remember the failure."""
    try:
        value = loader(billing.client_for(account_id))
    except BillingError as err:
        _log_failure(name, account_id, err)
        failure = _Failure(err.user_message, timezone.now())
        cache.set(key + ":failed", failure, settings.BILLING_ERROR_CACHE_SECONDS)
        return _failed(cached, failure)
    now = timezone.now()
    keep = max(settings.BILLING_STALE_SECONDS, settings.BILLING_CACHE_SECONDS)
    cache.set(key, _Entry(value, now), keep)
    cache.delete(key + ":failed")
    return Fetched(value, now)


def _failed(cached: _Entry | None, failure: _Failure) -> Fetched[Any]:
    if cached is not None:
        return Fetched(cached.value, cached.fetched_at, error=failure.message)
    return Fetched(None, None, error=failure.message)


#: How often a process waiting for another process's read tries its lock again.
POLL_SECONDS = 0.05


def _fetch_shared[T](
    backend: RedisCache, key: str, account_id: str, name: str, loader: Callable[[BillingClient], T]
) -> Fetched[T]:
    """One process of all asks Cloudflare, holding the key's lock in Redis; the others wait
    for the lock, then find the answer (or the remembered failure) in the cache."""
    resilient = backend if isinstance(backend, ResilientRedisCache) else None
    lock_key = backend.make_and_validate_key(key + ":lock")
    client = backend._cache.get_client(lock_key, write=True)
    lock = client.lock(lock_key, timeout=settings.BILLING_LOCK_SECONDS, sleep=POLL_SECONDS)
    # The process id tells an operator (and a test) which worker holds it.
    token = f"{os.getpid()}:{uuid.uuid4().hex}"
    try:
        taken = lock.acquire(blocking=False, token=token)
        if not taken:
            if logger.isEnabledFor(logging.DEBUG):
                holder = client.get(lock_key)
                who = holder.decode().partition(":")[0] if isinstance(holder, bytes) else "-"
                logger.debug("%s is being read by process %s; waiting for its answer", key, who)
            budget = _wait_budget()
            # No deadline: the lock's expiry bounds the wait (its owner answers or dies).
            taken = lock.acquire(token=token, blocking_timeout=None if budget < 0 else budget)
    except REDIS_UNREACHABLE as error:
        # This process's single flight (which the caller holds) is then the only one.
        _unreachable(resilient, "lock", error)
        return _fetch(key, account_id, name, loader, cache.get(key))
    if not taken:
        logger.debug("gave up waiting for %s at the page deadline", key)
        return Fetched(None, None, pending=True)
    logger.debug("took the shared lock of %s", key)
    try:
        # Another process may have answered while we waited for the lock.
        found = cache.get_many([key, key + ":failed"])
        cached, failure = found.get(key), found.get(key + ":failed")
        if _fresh(cached) is not None and cached is not None:
            return Fetched(cached.value, cached.fetched_at)
        if failure is not None:
            return _failed(cached, failure)
        return _fetch(key, account_id, name, loader, cached)
    finally:
        try:
            lock.release()
            logger.debug("released the shared lock of %s", key)
        except LockNotOwnedError:
            logger.warning(
                "the shared lock of %s expired before its read ended; "
                "BILLING_LOCK_SECONDS may be too short",
                key,
            )
        except REDIS_UNREACHABLE as error:
            _unreachable(resilient, "unlock", error)  # it expires by itself


def _unreachable(backend: ResilientRedisCache | None, operation: str, error: Exception) -> None:
    if backend is not None:
        backend.failed(operation, error)
    else:
        logger.warning("the shared lock could not reach Redis (%s): %r", operation, error)


def _shared_cache() -> RedisCache | None:
    """The cache when it is Redis, shared by all processes and reachable as far as we know."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    if isinstance(backend, ResilientRedisCache) and backend.unreachable():
        # Redis failed a moment ago: this process's single flight alone, without waiting for
        # a connection that would time out.
        return None
    return backend


def gather(
    reads: Mapping[str, Callable[[], Fetched[Any]]],
    *,
    deadline: float,
) -> dict[str, Fetched[Any]]:
    """Run ``reads`` in parallel; a read still out after ``deadline`` seconds is ``pending``.

    A pending read goes on in the background and fills the cache, so the card that asks
    again (lazily, from the browser) gets it without a second upstream call.
    """
    deadline_at = time.monotonic() + deadline
    # What is kept is answered here: a thread per read costs more than the read (a warm
    # overview took 8.9 ms in gather, its five reads in the pool).
    results: dict[str, Fetched[Any]] = {}
    _local.cached_only = True
    try:
        for name, fn in reads.items():
            with suppress(_NotKept):
                results[name] = fn()
    finally:
        _local.cached_only = False
    # Each read carries this request's id into its log lines and upstream calls. Only the
    # id is handed over, not a copy of the whole context: in a copied context Django's
    # context-local cache connections would be opened anew (a Redis connection and its
    # handshake per read per page) and dropped when the read ends.
    rid = request_id.get()
    futures: dict[str, Future[Fetched[Any]]] = {
        name: _executor().submit(_before, deadline_at, fn, rid)
        for name, fn in reads.items()
        if name not in results
    }
    if futures:
        wait(futures.values(), timeout=deadline, return_when=FIRST_EXCEPTION)
    for name, future in futures.items():
        if future.done():
            results[name] = future.result()
        else:
            results[name] = Fetched(None, None, pending=True)
    return results


_local = threading.local()


class _NotKept(Exception):
    """Raised by :func:`read` in gather's first pass, which answers only what is kept."""


def _before[T](deadline_at: float | None, fn: Callable[[], T], rid: str | None = None) -> T:
    """Run ``fn`` in a pool thread, waiting for others' reads no later than ``deadline_at``,
    as part of the request ``rid``."""
    _local.deadline_at = deadline_at
    token = request_id.set(rid)
    try:
        return fn()
    finally:
        request_id.reset(token)
        _local.deadline_at = None


def _wait_budget() -> float:
    """How long this thread may wait for another's read of the same key (-1: no limit)."""
    deadline_at: float | None = getattr(_local, "deadline_at", None)
    if deadline_at is None:
        return -1
    return max(0.0, deadline_at - time.monotonic())


_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_guard:
        if _pool is None:
            # Upstream calls wait on the network, not the CPU: threads are enough, and a
            # bound keeps a burst of page views from opening unbounded connections.
            _pool = ThreadPoolExecutor(
                max_workers=settings.BILLING_FETCH_WORKERS, thread_name_prefix="billing-read"
            )
        return _pool


def _fresh(entry: _Entry | None, periods: int = 1) -> _Entry | None:
    """``entry`` if it is younger than ``periods`` cache periods."""
    if entry is None:
        return None
    age = (timezone.now() - entry.fetched_at).total_seconds()
    return entry if 0 <= age < periods * settings.BILLING_CACHE_SECONDS else None


def readers(key: str | None = None) -> int:
    """Threads of this process in the single flight of ``key`` (asking Cloudflare or waiting
    for the one that does), or in any flight (None)."""
    with _flights_guard:
        if key is None:
            return sum(flight.users for flight in _flights.values())
        flight = _flights.get(key)
        return 0 if flight is None else flight.users


def _join(key: str) -> _Flight:
    with _flights_guard:
        flight = _flights.setdefault(key, _Flight())
        flight.users += 1
        return flight


def _leave(key: str, flight: _Flight) -> None:
    with _flights_guard:
        flight.users -= 1
        if flight.users == 0:
            _flights.pop(key, None)


def _log_failure(name: str, account_id: str, err: BillingError) -> None:
    # The client keeps the token out of its messages; the status and Cloudflare's request
    # id are what an operator needs to follow the failure up.
    status = err.status_code if isinstance(err, BillingStatusError) else None
    request_id = err.request_id if isinstance(err, BillingStatusError) else None
    logger.warning(
        "%s for account %s failed: %s: %s (status=%s request_id=%s)",
        name,
        account_id,
        type(err).__name__,
        err,
        status if status is not None else "-",
        request_id or "-",
    )
