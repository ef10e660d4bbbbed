"""``/metrics`` for Prometheus: to a scraper with the bearer token, or to staff logged in;
anyone else gets 401 or 403 (the metrics name accounts' endpoints and how often it is used)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from dashboard.infra.metrics import exposition


@login_not_required
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    authorization = request.headers.get("Authorization", "")
    if authorization:
        if not _token_matches(authorization):
            return _plain(403, "Wrong credentials for the metrics.")
    elif not request.user.is_authenticated:
        response = _plain(401, "The metrics need a bearer token (METRICS_TOKEN) or a staff login.")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    elif not (request.user.is_staff or request.user.is_superuser):
        return _plain(403, "The metrics are for staff only.")
    body, content_type = exposition(settings.PROMETHEUS_MULTIPROC_DIR)
    return HttpResponse(body, content_type=content_type)


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text + "\n", status=status, content_type="text/plain")


def _token_matches(authorization: str) -> bool:
    """``Bearer <METRICS_TOKEN>``, compared in constant time; no token configured: never."""
    expected = settings.METRICS_TOKEN
    scheme, _, credentials = authorization.partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), expected.encode())
