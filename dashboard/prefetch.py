"""What a request will read from the shared cache first, asked for in one round trip.

A warm overview read three things from Redis one after another, each a round trip: the
session, the generation of the users' snapshots (``dashboard.authcache``), then the kept page
and its account's generation (``dashboard.pagecache``). Under load, those waits were the
largest part of the page's time. All of their keys can be told from the request alone (the
session cookie, the URL), so :func:`middleware` asks for them together, with one ``get_many``,
before the session is read; each reader then takes its keys from there with :func:`get_many`.

A prefetched key is given out once: a second read of it in the same request (after a write
of this request, say) asks the cache again. A key nobody prefetched is asked of the cache as
before. The values are those of the cache at the start of the request, as a read by the
first reader a few statements later would have been; the readers' own checks (generations,
the session's hash) apply to them unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse


class _Prefetched:
    def __init__(self, values: dict[str, Any], keys: Iterable[str]) -> None:
        self.values = values
        #: Keys asked for and not given out yet (a key the cache did not have included).
        self.pending = set(keys)


_current: ContextVar[_Prefetched | None] = ContextVar("dashboard_prefetched", default=None)


def get_many(keys: Sequence[str]) -> dict[str, Any]:
    """Like ``cache.get_many``: prefetched keys from the request's batch (once each), the
    others from the cache, in one round trip at most."""
    prefetched = _current.get()
    found: dict[str, Any] = {}
    rest = list(keys)
    if prefetched is not None:
        rest = []
        for key in keys:
            if key in prefetched.pending:
                prefetched.pending.discard(key)
                if key in prefetched.values:
                    found[key] = prefetched.values[key]
            else:
                rest.append(key)
    if rest:
        found.update(cache.get_many(rest))
    return found


def was_prefetched(key: str) -> bool:
    """Whether ``key`` is in this request's batch and not given out yet."""
    prefetched = _current.get()
    return prefetched is not None and key in prefetched.pending


def request_keys(request: HttpRequest) -> list[str]:
    """The keys the session, the user's snapshot and a kept page will read for ``request``."""
    from dashboard import authcache, pagecache, sessions

    session_key = sessions.request_session_key(request)
    if session_key is None:
        return []  # nobody logged in: no session, user or kept page to read
    return [
        *sessions.prefetch_keys(session_key),
        *authcache.prefetch_keys(),
        *pagecache.prefetch_keys(request, session_key),
    ]


def middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[..., Any]:
    """Fetches :func:`request_keys` in one round trip before the session is read."""

    def prefetching(request: HttpRequest) -> HttpResponse:
        keys = request_keys(request)
        if not keys:
            return get_response(request)
        token = _current.set(_Prefetched(cache.get_many(keys), keys))
        try:
            return get_response(request)
        finally:
            _current.reset(token)

    return prefetching
