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

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from dashboard import metrics

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


def _page_key(request: HttpRequest, account_id: str) -> str | None:
    session_key = getattr(request, "session", None) and request.session.session_key
    if not session_key:
        return None
    parts = (
        session_key,
        account_id,
        request.get_full_path(),
        request.headers.get("HX-Request", ""),
        request.headers.get("HX-Target", ""),
    )
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"page:{digest}"


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
    key = _page_key(request, account_id) if seconds > 0 and request.method == "GET" else None
    if key is None:
        return render()[0]
    # A browser's hard reload (or anyone asking with no-cache) gets the page rendered anew:
    # the kept one is not even fetched.
    generation_key = _generation_key(account_id)
    found = cache.get_many([generation_key] if _no_cache(request) else [key, generation_key])
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
