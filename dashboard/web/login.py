"""The login page with throttling, and the end of idle or old sessions. A locked-out login is
refused with 429 and the same words whether the user exists or not, even with the right
password: a guesser learns nothing from a lock."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest, HttpResponse

from dashboard.infra import throttle

#: Session keys: when this login's session was first and last seen (wall-clock seconds).
STARTED_AT = "_session_started_at"
SEEN_AT = "_session_seen_at"


def now() -> float:
    """Wall-clock seconds: the one seam tests move to see a session end."""
    return time.time()


def lockout_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return (
        "Too many failed attempts to log in. Logging in is paused for a while: "
        f"try again in about {minutes} {unit}."
    )


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form, saying so when axes's backend refused a locked-out login."""

    retry_after: int | None = None

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except ValidationError as error:
            if self.request is None or not getattr(self.request, "axes_locked_out", False):
                raise
            self.retry_after = throttle.seconds_left(self.request)
            raise ValidationError(lockout_message(self.retry_after), code="throttled") from error


class ThrottledAdminAuthenticationForm(ThrottledAuthenticationForm, AdminAuthenticationForm):
    """Django admin's own login form, under the same locks: no second door for guessing."""


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429
            response["Retry-After"] = str(getattr(form, "retry_after", None) or 1)
        return response


def session_expiry(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[..., Any]:
    """Logs out a session idle for ``SESSION_IDLE_SECONDS`` or older than ``SESSION_COOKIE_AGE``
    (the login requirement then sends it to log in); "last seen" is written once a minute."""

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            at = now()
            started = float(request.session.setdefault(STARTED_AT, at))
            seen = float(request.session.setdefault(SEEN_AT, at))
            idle = int(settings.SESSION_IDLE_SECONDS)
            if at - started > settings.SESSION_COOKIE_AGE or (idle > 0 and at - seen > idle):
                logout(request)
            elif at - seen >= min(60.0, idle / 2 if idle > 0 else 60.0):
                request.session[SEEN_AT] = at
        return get_response(request)

    return middleware
