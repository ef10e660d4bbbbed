"""The login page with throttling, and the end of idle or old sessions.

A login is refused while its user name or its client address is locked out (see
``dashboard.throttle``): with HTTP 429 and the same words whether the user exists or not,
and even with the right password, so that a guesser learns nothing from a lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest, HttpResponse

from dashboard import throttle

#: Session keys: when this login's session was first and last seen (wall-clock seconds).
STARTED_AT = "_session_started_at"
SEEN_AT = "_session_seen_at"


def lockout_message(lock: throttle.Lockout) -> str:
    minutes = lock.minutes_left()
    unit = "minute" if minutes == 1 else "minutes"
    return (
        "Too many failed attempts to log in. Logging in is paused for a while: "
        f"try again in about {minutes} {unit}."
    )


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form, refusing while a lock is in force and counting each failure."""

    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "")
        address = throttle.client_address(self.request) if self.request else "unknown"
        lock = throttle.lockout(username, address)
        if lock is not None:
            # Before the password is checked: a locked-out right password is refused too.
            raise ValidationError(lockout_message(lock), code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if error.code == "invalid_login":
                started = throttle.record_failure(username, address)
                if started is not None:
                    raise ValidationError(lockout_message(started), code="throttled") from None
            raise
        if self.user_cache is not None:
            throttle.record_success(username)
        return cleaned


class ThrottledAdminAuthenticationForm(ThrottledAuthenticationForm, AdminAuthenticationForm):
    """Django admin's own login form, under the same locks: no second door for guessing."""


class LoginView(auth_views.LoginView):
    """Django's login view with the throttled form; a refusal for a lock answers 429."""

    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429
            lock = throttle.lockout(
                str(form.cleaned_data.get("username") or ""),
                throttle.client_address(self.request),
            )
            if lock is not None:
                response["Retry-After"] = str(max(1, int(lock.until - throttle.now())))
        return response


def session_expiry(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[..., Any]:
    """Logs out a session idle for ``SESSION_IDLE_SECONDS`` or older than ``SESSION_COOKIE_AGE``.

    Runs after authentication and before the login requirement, which then sends the visitor
    to the login page. The time last seen is written at most once a minute, not per request.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            at = throttle.now()
            started = request.session.get(STARTED_AT)
            seen = request.session.get(SEEN_AT)
            idle = int(settings.SESSION_IDLE_SECONDS)
            if started is None or seen is None:
                request.session[STARTED_AT] = at if started is None else started
                request.session[SEEN_AT] = at
            elif at - float(started) > settings.SESSION_COOKIE_AGE or (
                idle > 0 and at - float(seen) > idle
            ):
                logout(request)
            elif at - float(seen) >= min(60.0, idle / 2 if idle > 0 else 60.0):
                request.session[SEEN_AT] = at
        return get_response(request)

    return middleware
