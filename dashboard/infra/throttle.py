"""Login throttling: django-axes, each attempt counted before its password is checked (axes
counts after, so parallel guesses would all pass first); a login that succeeds takes it back.
A user name is locked per address, so a stranger elsewhere cannot lock the real user out.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from datetime import datetime, timedelta
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_user_agent, get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Sum
from django.http import HttpRequest
from django.utils import timezone

logger = logging.getLogger(__name__)


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """``AXES_COOLOFF_TIME``: read at each login, so a changed setting holds at once."""
    return timedelta(seconds=int(settings.LOGIN_LOCKOUT_SECONDS))


def username_key(request: HttpRequest, credentials: dict[str, Any] | None = None) -> str:
    """``AXES_USERNAME_CALLABLE``: the name as counted, so " LENA " cannot escape lena's lock."""
    raw = (credentials or {}).get("username") or request.POST.get("username") or ""
    return str(raw).strip().casefold()


def client_address(request: HttpRequest) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: ``REMOTE_ADDR``, or with ``LOGIN_TRUSTED_PROXIES`` the
    address the outermost trusted proxy saw, counted from the right of ``X-Forwarded-For``
    (what is left of it the client wrote). An IPv6 /64 counts as one address."""
    remote = _grouped(str(request.META.get("REMOTE_ADDR", "")))
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", ""))
    chain = [part.strip() for part in forwarded.split(",") if part.strip()]
    proxies: int = settings.LOGIN_TRUSTED_PROXIES
    if proxies <= 0 or len(chain) < proxies:
        return remote
    return _grouped(chain[-proxies]) or remote


def _grouped(address: str) -> str | None:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False).network_address)
    return str(parsed)


class PreCountingHandler(AxesDatabaseHandler):
    """axes's database handler, counting an attempt before its password is checked."""

    def _counts(
        self, request: HttpRequest, credentials: dict[str, Any] | None
    ) -> list[tuple[int, int, datetime | None]]:
        """Per lockout parameter: the attempts still remembered, its limit, the last one's time."""
        limits = (settings.LOGIN_MAX_FAILURES_PER_USER, settings.LOGIN_MAX_FAILURES_PER_ADDRESS)
        found = [
            attempts.aggregate(n=Sum("failures_since_start"), last=Max("attempt_time"))
            for attempts in self.get_user_attempts(request, credentials)
        ]
        return [(f["n"] or 0, limit, f["last"]) for f, limit in zip(found, limits, strict=True)]

    def is_locked(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
        return any(count >= limit for count, limit, _ in self._counts(request, credentials))

    def is_allowed(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
        """Before the password check: counts this attempt, committed before the counts are read,
        so of N attempts at once against a limit of L at most L pass. A locked-out attempt is
        not counted: retrying does not make a lock last longer."""
        self.clean_expired_user_attempts(request, credentials)
        if not self.is_locked(request, credentials):
            self._count(request, credentials)
            if all(count <= limit for count, limit, _ in self._counts(request, credentials)):
                return True
        request.axes_locked_out = True  # type: ignore[attr-defined]
        return False

    def _count(self, request: HttpRequest, credentials: dict[str, Any] | None) -> None:
        """One more attempt on this name, address and user agent's row: one atomic UPDATE."""
        key = {
            "username": get_client_username(request, credentials),
            "ip_address": request.axes_ip_address,  # type: ignore[attr-defined]
            "user_agent": get_client_user_agent(request),
        }
        at = request.axes_attempt_time  # type: ignore[attr-defined]
        row = AccessAttempt.objects.filter(**key)
        bump = {"failures_since_start": F("failures_since_start") + 1, "attempt_time": at}
        if row.update(**bump):
            return
        try:
            with transaction.atomic():
                AccessAttempt.objects.create(
                    **key,
                    failures_since_start=1,
                    attempt_time=at,
                    get_data="",
                    post_data="",  # never the form: it holds the password
                    http_accept=request.META.get("HTTP_ACCEPT", "")[:1025],
                    path_info=request.path[:255],
                )
        except IntegrityError:  # created by a parallel attempt meanwhile
            row.update(**bump)

    def user_login_failed(
        self,
        sender: Any,
        credentials: dict[str, Any],
        request: HttpRequest | None = None,
        **kwargs: Any,
    ) -> None:
        """The failure was counted before the check: only notes whether it locked."""
        if request is None or getattr(request, "axes_locked_out", False):
            return
        if self.is_locked(request, credentials):
            request.axes_locked_out = True  # type: ignore[attr-defined]
            logger.warning(
                "login locked out for %d s: user %s from %s",
                int(settings.LOGIN_LOCKOUT_SECONDS),
                ascii(get_client_username(request, credentials)[:150]),
                request.axes_ip_address,  # type: ignore[attr-defined]
            )

    def user_logged_in(self, sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        """A right password takes back this name's failures from this address (its own too);
        the address's failures at other names stay counted."""
        AccessAttempt.objects.filter(
            username=get_client_username(request, {"username": user.get_username()}),
            ip_address=request.axes_ip_address,  # type: ignore[attr-defined]
        ).delete()

    def user_logged_out(self, sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        """Nothing to note: Django's sessions and the audit log say who was logged in."""


class ThrottleBackend(AxesStandaloneBackend):
    """axes's backend, first in ``AUTHENTICATION_BACKENDS``: refuses a locked-out login.
    Without a request (the test client, a shell) there is no address to count: it passes."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is not None:
            super().authenticate(request, username, password, **kwargs)


def seconds_left(request: HttpRequest) -> int:
    """Whole seconds until this request's lock ends, rounded up, at least 1."""
    AxesProxyHandler.update_request(request)
    counts = PreCountingHandler()._counts(request, None)
    now = timezone.now()
    ends = [last + cool_off(request) for n, limit, last in counts if n >= limit and last]
    return max(1, math.ceil((max(ends, default=now) - now).total_seconds()))
