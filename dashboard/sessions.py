"""Sessions in the database, read through the shared cache: Django's ``cached_db`` store,
taking its cache read from the request's prefetched batch (``dashboard.prefetch``).

``SESSION_ENGINE = "dashboard.sessions"`` (with ``REDIS_URL``). Everything else, the database
as the store of record, writes through, expiry, is Django's.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import cached_db
from django.core.cache import DEFAULT_CACHE_ALIAS
from django.http import HttpRequest

from dashboard import prefetch


def _prefetching() -> bool:
    return (
        __name__ == settings.SESSION_ENGINE and settings.SESSION_CACHE_ALIAS == DEFAULT_CACHE_ALIAS
    )


def request_session_key(request: HttpRequest) -> str | None:
    """The session key in the request's cookie, if it is a well-formed one (as Django checks)."""
    cookie = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not cookie:
        return None
    key: str | None = SessionStore(cookie).session_key
    return key


def prefetch_keys(session_key: str) -> list[str]:
    return [SessionStore.cache_key_prefix + session_key] if _prefetching() else []


class SessionStore(cached_db.SessionStore):
    def load(self) -> dict[str, Any]:
        if _prefetching():
            key = self.cache_key
            data: dict[str, Any] | None = prefetch.get_many([key]).get(key)
            if data is not None:
                return data
        # Not in the cache (or not prefetched): Django's own path, the database behind it.
        loaded: dict[str, Any] = super().load()
        return loaded
