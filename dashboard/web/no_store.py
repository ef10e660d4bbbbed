"""``Cache-Control: private, no-store`` on every answer Django renders: pages, fragments and
exports name balances and people, so no proxy, disk cache or back button after logout may
keep one."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_cache_control


def middleware(
    get_response: Callable[[HttpRequest], HttpResponseBase],
) -> Callable[[HttpRequest], HttpResponseBase]:
    def no_store(request: HttpRequest) -> HttpResponseBase:
        response = get_response(request)
        # Merged into what a view set; "private" drops a "public".
        patch_cache_control(response, private=True, no_store=True)
        return response

    return no_store
