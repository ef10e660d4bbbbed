"""``Cache-Control: private, no-store`` on every answer Django renders.

Pages, htmx fragments and CSV exports name balances, invoices and people: no shared proxy,
and no browser disk cache or back button after logout, may keep one. Static files are served
before this (by WhiteNoise, with their own long cache). Public answers (the login page, the
health checks) carry it too: none of them is worth keeping, and one rule is easier to trust.
Nothing here answers 304 or streams, so no validator or stream is affected.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control


def middleware(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    def no_store(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        # Merged into what a view set (never_cache's no-cache, must-revalidate stay);
        # "private" drops a "public".
        patch_cache_control(response, private=True, no_store=True)
        return response

    return no_store
