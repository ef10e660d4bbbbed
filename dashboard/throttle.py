"""Login throttling: failed logins counted per user name and per client address.

Counters and locks live in Django's cache, so with ``REDIS_URL`` every process and host
shares them. Each kind counts failures in a sliding window (the current and previous
windows' counts, the previous weighted by how much of it still overlaps); reaching the limit
locks that user name (or address) out for ``LOGIN_LOCKOUT_SECONDS``. A lock is refused the
same way whether the user exists or not, so it tells nothing about who has an account.

Times come from ``now()`` (wall-clock seconds), not from the dashboard's reporting clock,
which tests may move with the simulator's; tests move this one to see a lock expire.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

Kind = Literal["user", "address"]
_PREFIX = "login-throttle"
#: What a cache backend raises when it cannot be reached (Redis's own, or a socket's).
CACHE_ERRORS = (RedisError, OSError)


def now() -> float:
    """Wall-clock seconds: the one seam tests move to see a window or a lock end."""
    return time.time()


@dataclass(frozen=True)
class Lockout:
    """A lock in force: which kind, and when it ends (wall-clock seconds)."""

    kind: Kind
    until: float

    def minutes_left(self, at: float | None = None) -> int:
        """Whole minutes until the lock ends, rounded up, at least 1."""
        seconds = self.until - (now() if at is None else at)
        return max(1, math.ceil(seconds / 60))


def client_address(request: HttpRequest) -> str:
    """The address a request came from, which a client cannot forge.

    ``REMOTE_ADDR``, unless ``LOGIN_TRUSTED_PROXIES`` says how many proxies stand in front:
    then the address the outermost trusted proxy saw, counted from the right of
    ``X-Forwarded-For`` (each proxy appends the address it was reached from; anything left of
    that was written by the client). A header too short or malformed falls back to
    ``REMOTE_ADDR``.
    """
    remote = str(request.META.get("REMOTE_ADDR", "") or "unknown")
    proxies: int = settings.LOGIN_TRUSTED_PROXIES
    if proxies <= 0:
        return remote
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    chain = [part.strip() for part in forwarded.split(",") if part.strip()]
    if len(chain) < proxies:
        return remote
    candidate = chain[-proxies]
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return remote
    return candidate


def _address_key(address: str) -> str:
    """An IPv6 client usually holds a whole /64: counting single addresses would not hold it."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _subject(kind: Kind, value: str) -> str:
    """A cache-safe, fixed-length name for a user name or address (never stored in clear)."""
    normal = value.strip().casefold() if kind == "user" else _address_key(value)
    return hashlib.sha256(normal.encode("utf-8", "replace")).hexdigest()[:32]


def _limit(kind: Kind) -> int:
    if kind == "user":
        return int(settings.LOGIN_MAX_FAILURES_PER_USER)
    return int(settings.LOGIN_MAX_FAILURES_PER_ADDRESS)


def _lock_key(kind: Kind, subject: str) -> str:
    return f"{_PREFIX}:lock:{kind}:{subject}"


def _count_key(kind: Kind, subject: str, window: int) -> str:
    return f"{_PREFIX}:fail:{kind}:{subject}:{window}"


def _increment(key: str, ttl: int) -> int:
    """Adds one to a counter that expires ``ttl`` seconds after its first failure; atomic."""
    cache.add(key, 0, ttl)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, ttl)
        return 1


def _add_failure(kind: Kind, subject: str, at: float) -> float:
    """Counts one failure at ``at``; returns the failures in the sliding window ending then."""
    length = int(settings.LOGIN_FAILURE_WINDOW_SECONDS)
    window = int(at // length)
    # Kept for two windows: the next one still weighs it.
    current = _increment(_count_key(kind, subject, window), 2 * length)
    previous = int(cache.get(_count_key(kind, subject, window - 1), 0))
    overlap = 1 - (at - window * length) / length
    return current + previous * overlap


def _clear_counts(kind: Kind, subject: str, at: float) -> None:
    window = int(at // int(settings.LOGIN_FAILURE_WINDOW_SECONDS))
    cache.delete_many([_count_key(kind, subject, w) for w in (window, window - 1)])


def _subjects(username: str, address: str) -> tuple[tuple[Kind, str], ...]:
    return (("user", username), ("address", address))


def lockout(username: str, address: str) -> Lockout | None:
    """The lock that refuses this login now, if any (the one that ends last)."""
    at = now()
    found: list[Lockout] = []
    try:
        for kind, value in _subjects(username, address):
            until = cache.get(_lock_key(kind, _subject(kind, value)))
            # The cache entry outlives the lock a little; the time in it decides.
            if until is not None and float(until) > at:
                found.append(Lockout(kind, float(until)))
    except CACHE_ERRORS as error:
        _unavailable(error)
    return max(found, key=lambda lock: lock.until, default=None)


def record_failure(username: str, address: str) -> Lockout | None:
    """Counts a failed login against the user name and the address; locks what reached its limit.

    Returns the lock this failure started, if any. The counters of a locked user name or
    address start again from nothing when its lock ends.
    """
    at = now()
    started: list[Lockout] = []
    seconds = int(settings.LOGIN_LOCKOUT_SECONDS)
    try:
        for kind, value in _subjects(username, address):
            subject = _subject(kind, value)
            if _add_failure(kind, subject, at) < _limit(kind):
                continue
            until = at + seconds
            cache.set(_lock_key(kind, subject), until, seconds + 60)
            _clear_counts(kind, subject, at)
            started.append(Lockout(kind, until))
            logger.warning(
                "login locked out for %d s: %s %s after %d failed attempts",
                seconds,
                kind,
                ascii(value[:150]),
                _limit(kind),
            )
    except CACHE_ERRORS as error:
        _unavailable(error)
    return max(started, key=lambda lock: lock.until, default=None)


def record_success(username: str) -> None:
    """A correct login forgets the user name's failures (not the address's: one good account
    must not buy an address fresh guesses at others)."""
    try:
        _clear_counts("user", _subject("user", username), now())
    except CACHE_ERRORS as error:
        _unavailable(error)


def _unavailable(error: Exception) -> None:
    """Without its cache the throttle lets logins through (passwords are still checked)
    rather than lock everyone out or fail the page; it says so in the log each time."""
    logger.error("login throttling is off: the cache cannot be reached (%s)", type(error).__name__)
