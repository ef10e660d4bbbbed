"""A few seconds' memory of a rendered overview, per session and account.

A warm overview costs no upstream call, but building and rendering it still took tens of
milliseconds of CPU per view (a month of hourly usage turned into runway figures, five cards
of template), while people reload it, open it in several tabs and leave htmx cards asking.
So the answer to one session's GET of one URL is kept for ``PAGE_CACHE_SECONDS`` in the
shared cache and sent again as is:

* only after the permission and account checks have run for this request (a revoked grant
  is refused at once, never served from here);
* only for the session that rendered it (the page names its user and carries its CSRF token):
  the key is a digest of the session key, the account, the full path and the htmx headers;
* only a page whose every card came back fresh (nothing still loading, failed or stale: such
  a page must ask again at once), and never past the time its oldest figures stop being
  fresh (``BILLING_CACHE_SECONDS`` after they were fetched, as the read cache counts it);
* never after a change: each write that makes the dashboard forget an account's billing
  reads (a top-up, a rule, a limit) calls :func:`forget`, which moves the account's
  generation on, and a kept page of an older generation is not used.

A request with ``Cache-Control: no-cache`` (a browser's hard reload) is rendered anew.
``PAGE_CACHE_SECONDS = 0`` turns it off.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, get_urlconf, resolve
from django.utils import timezone

from dashboard import metrics, prefetch

#: Headers of the kept answer that are sent again (the middleware adds the rest anew).
KEPT_HEADERS = ("Content-Type", "Vary", "Server-Timing")


@dataclass(frozen=True)
class _Kept:
    generation: str | None
    fresh_until: datetime
    body: bytes
    headers: tuple[tuple[str, str], ...]


def _generation_key(account_id: str) -> str:
    return f"page-generation:{account_id}"


def _page_key(request: HttpRequest, account_id: str, session_key: str | None) -> str | None:
    if not session_key:
        return None
    parts = (
        session_key,
        account_id,
        request.get_full_path(),
        request.headers.get("HX-Request", ""),
        request.headers.get("HX-Target", ""),
    )
    # Asked twice per request (by the prefetch, then by serve): the digest is made once.
    made: tuple[tuple[str, ...], str] | None = getattr(request, "_dashboard_page_key", None)
    if made is None or made[0] != parts:
        digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        made = (parts, f"page:{digest}")
        request._dashboard_page_key = made  # type: ignore[attr-defined]
    return made[1]


def _keys(request: HttpRequest, account_id: str, session_key: str | None) -> list[str]:
    """What :func:`serve` reads: the kept page (unless no-cache) and the account's generation."""
    if settings.PAGE_CACHE_SECONDS <= 0 or request.method != "GET":
        return []
    key = _page_key(request, account_id, session_key)
    if key is None:
        return []
    # A browser's hard reload (or anyone asking with no-cache) gets the page rendered anew:
    # the kept one is not even fetched.
    return [_generation_key(account_id)] + ([] if _no_cache(request) else [key])


#: The URL names of the views that answer through :func:`serve` (with an ``account_id``).
KEPT_VIEWS = frozenset({"overview"})


def prefetch_keys(request: HttpRequest, session_key: str) -> list[str]:
    """:func:`_keys` for a request to one of :data:`KEPT_VIEWS`, for ``dashboard.prefetch``."""
    if settings.PAGE_CACHE_SECONDS <= 0 or request.method != "GET":
        return []
    account_id = _kept_account(get_urlconf() or settings.ROOT_URLCONF, request.path_info)
    return [] if account_id is None else _keys(request, account_id, session_key)


@lru_cache(maxsize=1024)
def _kept_account(urlconf: str, path: str) -> str | None:
    """The account of a path to one of :data:`KEPT_VIEWS`, else None. Django resolves the path
    again for the view itself; the few paths a dashboard serves are resolved here once."""
    try:
        match = resolve(path, urlconf)
    except Resolver404:
        return None
    account_id = match.kwargs.get("account_id")
    if match.url_name not in KEPT_VIEWS or not isinstance(account_id, str):
        return None
    return account_id


def serve(
    request: HttpRequest,
    account_id: str,
    render: Callable[[], tuple[HttpResponse, datetime | None]],
) -> HttpResponse:
    """The kept answer to this request, or ``render()``'s, kept if it may be.

    ``render`` returns the response and until when its figures are fresh (None: every card
    was not fresh, do not keep it).
    """
    seconds = settings.PAGE_CACHE_SECONDS
    session = getattr(request, "session", None)
    session_key = session.session_key if session is not None else None
    keys = _keys(request, account_id, session_key)
    key = _page_key(request, account_id, session_key)
    if not keys or key is None:
        return render()[0]
    generation_key = _generation_key(account_id)
    # Usually fetched already, with the session, in one round trip (dashboard.prefetch).
    found = prefetch.get_many(keys)
    kept: _Kept | None = found.get(key)
    generation: str | None = found.get(generation_key)
    if kept is not None and kept.generation == generation and timezone.now() < kept.fresh_until:
        metrics.record_page_cache(hit=True)
        response = HttpResponse(kept.body)
        for name, value in kept.headers:
            response[name] = value
        response["X-Page-Cache"] = "hit"
        return response
    metrics.record_page_cache(hit=False)
    response, fresh_until = render()
    keep = fresh_until is not None and timezone.now() < fresh_until
    if keep and response.status_code == 200 and not response.cookies:
        assert fresh_until is not None
        headers = tuple((name, response[name]) for name in KEPT_HEADERS if name in response)
        cache.set(key, _Kept(generation, fresh_until, response.content, headers), seconds)
    return response


def _no_cache(request: HttpRequest) -> bool:
    asked = request.headers.get("Cache-Control", "") + "," + request.headers.get("Pragma", "")
    return any(part.strip().lower() == "no-cache" for part in asked.split(","))


def forget(account_id: str) -> None:
    """After a change to ``account_id``: no kept page of it is served again."""
    cache.set(_generation_key(account_id), uuid.uuid4().hex, None)
