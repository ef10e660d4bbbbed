"""Public, cheap probes: ``/healthz`` (touches nothing) and ``/readyz`` (what a page needs, 503
if any fails). A failing check is named by its kind, never by a message that could carry a host
or a secret; the upstream check shares the overview's cached read."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from dashboard.infra import upstream
from dashboard.infra.cache import errors_raised
from dashboard.services import reads

logger = logging.getLogger(__name__)

#: How long /readyz waits for Cloudflare (a slower answer still fills the cache for the next).
UPSTREAM_DEADLINE = 3.0


class CheckFailed(Exception):
    """A check's failure in plain words that are safe to show (no host, no secret)."""


@login_not_required
@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok\n", content_type="text/plain")


@login_not_required
@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Database, cache and upstream, each with ok/error and how long it took."""
    checks = {
        "database": _run(_check_database),
        "cache": _run(_check_cache),
        "upstream": _run(_check_upstream),
    }
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


def _run(check: Callable[[], None]) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"ok": True}
    try:
        check()
    except CheckFailed as err:
        result = {"ok": False, "error": str(err)}
    except Exception as err:
        # Logged for the operator (our loggers never carry the token); shown by kind only.
        logger.warning("readiness check %s failed: %r", check.__name__, err)
        result = {"ok": False, "error": type(err).__name__}
    result["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    # A key of its own per probe: concurrent probes never read each other's value.
    key = f"readyz:{uuid.uuid4().hex}"
    # The cache answers a Redis it cannot reach as a miss, for pages; the probe must see it.
    with errors_raised():
        try:
            cache.set(key, 1, timeout=5)
            if cache.get(key) != 1:
                raise CheckFailed("the cache did not keep a value")
        finally:
            cache.delete(key)


def _check_upstream() -> None:
    account_id = settings.BILLING_DEFAULT_ACCOUNT
    fetched = upstream.gather(
        {"balance": lambda: reads.credit_balance(account_id)}, deadline=UPSTREAM_DEADLINE
    )["balance"]
    if fetched.pending:
        raise CheckFailed(f"no answer from Cloudflare within {UPSTREAM_DEADLINE:g} s")
    if fetched.error is not None:
        raise CheckFailed(fetched.error)
