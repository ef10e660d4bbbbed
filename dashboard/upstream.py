"""Reads from Cloudflare, shared: brief caching, one call for many askers, stale on failure.

Cloudflare allows an API token about 1,200 requests per 5 minutes, so upstream calls must
not grow with the number of people looking, nor with the number of processes serving them.
Every read goes through :func:`read`:

* a fresh cached answer (``BILLING_CACHE_SECONDS``) is used as is;
* otherwise one thread per key asks Cloudflare while the others with the same key wait for
  its answer (single flight), so concurrent identical calls cost one upstream call;
* with a shared cache (Redis, ``REDIS_URL``) that thread first takes a lock in Redis, so
  that one process of all the processes and hosts asks while the others poll the cache for
  its answer, with a short backoff and no longer than the page's deadline. The lock expires
  after ``BILLING_LOCK_SECONDS`` (longer than a read can take, retries included), so a
  worker that dies holding it delays the others by at most that, and only its owner's token
  can delete it. With the local-memory cache (demo mode) the process is the whole world;
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
import pickle
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from billing_api.client import BillingClient, request_id
from billing_api.errors import BillingError, BillingStatusError
from dashboard import billing, metrics
from dashboard.cache import UNREACHABLE as REDIS_UNREACHABLE
from dashboard.cache import ResilientRedisCache
from dashboard.memo import Recent

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger(__name__)

# Raised whenever what is kept changes shape, so that a new release never unpickles an old one.
CACHE_VERSION = 2


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


class _Entry:
    """A good answer and when it was fetched, as kept in the cache.

    The cache pickles what it keeps, and a usage history is hundreds of pydantic models:
    unpickling them on every page view cost more than the rest of a warm overview. So an entry
    travels as its value's pickle plus a token naming that one answer, and each process keeps
    the values it has already decoded, by token (``_decoded``): a warm read fetches the bytes
    but decodes only the first time a process sees them. The values are frozen models, shared
    read-only between requests, as they were within one request before.
    """

    __slots__ = ("fetched_at", "token", "value")

    def __init__(self, value: Any, fetched_at: datetime, token: str | None = None) -> None:
        self.value = value
        self.fetched_at = fetched_at
        self.token = token or uuid.uuid4().hex

    def __reduce__(self) -> tuple[Any, ...]:
        _remember(self.token, self.value)
        blob = pickle.dumps(self.value, protocol=pickle.HIGHEST_PROTOCOL)
        return (_restore, (self.token, self.fetched_at, blob))


#: Decoded values by entry token, most recently used last; a few hundred keys at most are
#: read per process in a cache period (accounts x reads x ranges), so old ones fall out.
_decoded: Recent[str, Any] = Recent(256)
#: What ``_decoded.get`` answers for a token it does not hold (a decoded value may be None).
_UNKNOWN = object()


def _remember(token: str, value: Any) -> None:
    _decoded.put(token, value)


def _restore(token: str, fetched_at: datetime, blob: bytes) -> _Entry:
    """Unpickles an entry, decoding its value only if this process has not already."""
    value = _decoded.get(token, _UNKNOWN)
    if value is _UNKNOWN:
        value = pickle.loads(blob)  # the cache's own bytes, as Django's cache unpickles them
        _remember(token, value)
    return _Entry(value, fetched_at, token)


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
) -> Fetched[T]:
    """Read ``name`` for ``account_id`` through the cache; never raises a BillingError."""
    key = cache_key(account_id, name, params)
    entry = _fresh(cache.get(key))
    metrics.record_cache(name, hit=entry is not None)
    if entry is not None:
        return Fetched(entry.value, entry.fetched_at)
    flight = _join(key)
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
            lock = _shared_lock(key)
            if lock is None:
                return _fetch(key, account_id, name, loader, cached)
            return _fetch_shared(lock, key, account_id, name, loader)
        finally:
            flight.lock.release()
    finally:
        _leave(key, flight)


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


#: How often a process waiting for another's read looks at the cache: soon at first (reads
#: take a few hundred milliseconds), then less often, never in step with the other waiters.
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.25


def _fetch_shared[T](
    lock: _SharedLock, key: str, account_id: str, name: str, loader: Callable[[BillingClient], T]
) -> Fetched[T]:
    """One process of all asks Cloudflare; the others wait for its answer in the cache."""
    delay = POLL_FIRST_SECONDS
    waiting_since: float | None = None
    while True:
        if lock.acquire():
            if waiting_since is not None:
                logger.debug(
                    "took the shared lock of %s after %.2fs", key, time.monotonic() - waiting_since
                )
            try:
                # Another process may have answered between our look at the cache and now.
                cached, failure = _look(key)
                if _fresh(cached) is not None and cached is not None:
                    return Fetched(cached.value, cached.fetched_at)
                if failure is not None:
                    return _failed(cached, failure)
                return _fetch(key, account_id, name, loader, cached)
            finally:
                lock.release()
        if waiting_since is None:
            waiting_since = time.monotonic()
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s is being read by %s; waiting for its answer", key, lock.holder())
        cached, failure = _look(key)
        if _fresh(cached) is not None and cached is not None:
            return Fetched(cached.value, cached.fetched_at)
        if failure is not None:
            return _failed(cached, failure)
        budget = _wait_budget()
        if budget == 0:
            logger.debug("gave up waiting for %s at the page deadline", key)
            return Fetched(None, None, pending=True)
        # No deadline: the lock's expiry bounds the wait (its owner answers or dies).
        pause = delay * random.uniform(0.5, 1.0)
        time.sleep(pause if budget < 0 else min(pause, budget))
        delay = min(delay * 2, POLL_MAX_SECONDS)


def _look(key: str) -> tuple[_Entry | None, _Failure | None]:
    """The cached answer and the remembered failure of ``key``, in one round trip."""
    found = cache.get_many([key, key + ":failed"])
    return found.get(key), found.get(key + ":failed")


#: Deletes the lock only if it still holds the caller's token: a lock that expired during a
#: slow read and was taken by another process is theirs now.
_RELEASE_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""


class _SharedLock:
    """A lock on one read, held in Redis for all processes, taken with SET NX PX.

    If Redis cannot be reached, the lock is taken without it: this process's single flight
    (which its caller holds) is then the only one, and its caller asks Cloudflare.
    """

    def __init__(
        self,
        client: Redis,
        redis_key: str,
        key: str,
        backend: ResilientRedisCache | None = None,
    ) -> None:
        self._client = client
        self._redis_key = redis_key
        self._key = key
        self._backend = backend
        #: Taken without Redis, which could not be reached: nothing to release there.
        self._local_only = False
        # The process id tells an operator (and a test) which worker holds it; the random
        # part makes it this read's alone.
        self._token = f"{os.getpid()}:{uuid.uuid4().hex}"

    def acquire(self) -> bool:
        ttl_ms = max(1, int(settings.BILLING_LOCK_SECONDS * 1000))
        try:
            taken = bool(self._client.set(self._redis_key, self._token, nx=True, px=ttl_ms))
        except REDIS_UNREACHABLE as error:
            self._unreachable("lock", error)
            self._local_only = True
            return True
        if taken:
            logger.debug("took the shared lock of %s for %sms", self._key, ttl_ms)
        return taken

    def release(self) -> None:
        if self._local_only:
            return
        try:
            released = self._client.eval(_RELEASE_SCRIPT, 1, self._redis_key, self._token)
        except REDIS_UNREACHABLE as error:
            # It expires by itself after BILLING_LOCK_SECONDS.
            self._unreachable("unlock", error)
            return
        if released:
            logger.debug("released the shared lock of %s", self._key)
        else:
            logger.warning(
                "the shared lock of %s expired before its read ended; "
                "BILLING_LOCK_SECONDS may be too short",
                self._key,
            )

    def holder(self) -> str:
        """Which process holds the lock now, for the log."""
        try:
            value = self._client.get(self._redis_key)
        except REDIS_UNREACHABLE:
            return "unknown (the cache cannot be reached)"
        if not isinstance(value, bytes):
            return "nobody (it just ended)"
        return "process " + value.decode(errors="replace").partition(":")[0]

    def _unreachable(self, operation: str, error: Exception) -> None:
        if self._backend is not None:
            self._backend.failed(operation, error)
        else:
            logger.warning("the shared lock of %s could not reach Redis: %r", self._key, error)


def _shared_lock(key: str) -> _SharedLock | None:
    """The cross-process lock of ``key`` when the cache is shared (Redis), else None."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    resilient = backend if isinstance(backend, ResilientRedisCache) else None
    if resilient is not None and resilient.unreachable():
        # Redis failed a moment ago: this process's single flight alone, without waiting for
        # a connection that would time out.
        return None
    redis_key = backend.make_and_validate_key(key + ":lock")
    client = backend._cache.get_client(redis_key, write=True)
    return _SharedLock(client, redis_key, key, resilient)


def gather(
    reads: Mapping[str, Callable[[], Fetched[Any]]], *, deadline: float
) -> dict[str, Fetched[Any]]:
    """Run ``reads`` in parallel; a read still out after ``deadline`` seconds is ``pending``.

    A pending read goes on in the background and fills the cache, so the card that asks
    again (lazily, from the browser) gets it without a second upstream call.
    """
    deadline_at = time.monotonic() + deadline
    # Each read carries this request's id into its log lines and upstream calls. Only the
    # id is handed over, not a copy of the whole context: in a copied context Django's
    # context-local cache connections would be opened anew (a Redis connection and its
    # handshake per read per page) and dropped when the read ends.
    rid = request_id.get()
    futures: dict[str, Future[Fetched[Any]]] = {
        name: _executor().submit(_before, deadline_at, fn, rid) for name, fn in reads.items()
    }
    wait(futures.values(), timeout=deadline, return_when=FIRST_EXCEPTION)
    results: dict[str, Fetched[Any]] = {}
    for name, future in futures.items():
        if future.done():
            results[name] = future.result()
        else:
            results[name] = Fetched(None, None, pending=True)
    return results


_local = threading.local()


def _before[T](deadline_at: float, fn: Callable[[], T], rid: str | None = None) -> T:
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


def _fresh(entry: _Entry | None) -> _Entry | None:
    if entry is None:
        return None
    age = (timezone.now() - entry.fetched_at).total_seconds()
    return entry if 0 <= age < settings.BILLING_CACHE_SECONDS else None


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
