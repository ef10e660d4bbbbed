"""Request ids, and log lines and error reports scrubbed of secrets: every line of a page view
can be found by its id (also sent to Cloudflare on each call), and no token, key or password
reaches a log or an error report, whatever was logged.
"""

from __future__ import annotations

import html
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import pythonjsonlogger.json
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.safestring import SafeString, mark_safe
from django.views.debug import ExceptionReporter

from billing_api.client import request_id as request_id

#: Ids we accept from a client: short, and only characters that cannot forge a log line or
#: a header (no spaces, quotes, newlines or control characters).
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
REQUEST_ID_HEADER = "X-Request-ID"
NO_REQUEST = "-"
REDACTED = "[redacted]"

# A credential in a logged header or URL, whatever its value.
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# The password of a URL (scheme://user:password@host), however short: Redis, mail, databases.
_URL_PASSWORD_RE = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@?#]*:)[^/\s@?#]+@")
# Secrets shorter than this are not scrubbed as text: replacing every "1234" in a log would
# hide more than it protects (no real token or key is this short).
_MIN_SECRET_LENGTH = 8


class RequestIdMiddleware:
    """Gives each request an id: the client's well-formed ``X-Request-ID``, or a new one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request.headers.get(REQUEST_ID_HEADER, "")
        if not REQUEST_ID_RE.fullmatch(rid):
            rid = uuid.uuid4().hex
        # Also on the request, for Django's log of a 4xx/5xx once the variable is reset.
        request.request_id = rid  # type: ignore[attr-defined]
        token = request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response[REQUEST_ID_HEADER] = rid
        return response


def stamp_request_id(record: logging.LogRecord) -> None:
    """Puts on ``record`` the id of its request: the context's, or that of the request the
    record carries (Django logs a 4xx/5xx after the middleware), else ``-``."""
    if not getattr(record, "request_id", None):
        rid = request_id.get() or getattr(getattr(record, "request", None), "request_id", None)
        record.request_id = rid if isinstance(rid, str) else NO_REQUEST


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        stamp_request_id(record)
        return True


def known_secrets() -> list[str]:
    """The secrets this process holds, longest first; read from settings at each call, so
    that a secret changed in tests (or a new account's token) is scrubbed too."""
    if not settings.configured:
        return []
    candidates: list[object] = [
        settings.CLOUDFLARE_API_TOKEN,
        settings.SECRET_KEY,
        settings.METRICS_TOKEN,
        *settings.BILLING_ACCOUNT_TOKENS.values(),
        *(database.get("PASSWORD", "") for database in settings.DATABASES.values()),
    ]
    for url in (settings.REDIS_URL, settings.EMAIL_URL):
        # A URL's password as written in it (percent-encoded) and decoded.
        with suppress(ValueError):
            password = urlsplit(url).password or ""
            candidates += [password, unquote(password)]
    secrets = {c for c in candidates if isinstance(c, str) and len(c) >= _MIN_SECRET_LENGTH}
    return sorted(secrets, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret, bearer credential and URL password redacted."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD_RE.sub(rf"\1{REDACTED}@", text)
    return _BEARER_RE.sub(rf"\1 {REDACTED}", text)


def with_escaped(secrets: list[str], escape: Callable[[str], str]) -> list[str]:
    """Each secret as written and as ``escape`` writes it, longest first: no secret inside
    another's escaped form is redacted before it (which would leave the rest of it shown)."""
    return sorted({*secrets, *map(escape, secrets)}, key=len, reverse=True)


def _json_escape(secret: str) -> str:
    """As a JSON string writes it: a quote or backslash escaped."""
    return json.dumps(secret, ensure_ascii=False)[1:-1]


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line: time (ISO-8601 UTC), level, logger, message, request id,
    thread, ``extra`` fields, ``exc_type`` and ``exc``; the finished line scrubbed."""

    def __init__(self) -> None:
        super().__init__(
            # Which thread: a page's parallel reads log from the pool's ("billing-read_3").
            "{created}{levelname}{name}{message}{request_id}{threadName}",
            style="{",
            rename_fields={
                "created": "time",
                "levelname": "level",
                "name": "logger",
                "threadName": "thread",
                "exc_info": "exc",
                "stack_info": "stack",
            },
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        if record.exc_info and record.exc_info[0]:
            log_data["exc_type"] = record.exc_info[0].__name__

    def format(self, record: logging.LogRecord) -> str:
        stamp_request_id(record)
        return scrub(super().format(record), with_escaped(known_secrets(), _json_escape))


class PlainFormatter(logging.Formatter):
    """A readable line with the request id, for a terminal; secrets scrubbed like JSON's."""

    def __init__(self) -> None:
        super().__init__("{asctime} {levelname} {name} [{request_id}] {message}", style="{")

    def format(self, record: logging.LogRecord) -> str:
        stamp_request_id(record)
        return scrub(super().format(record), known_secrets())


class ScrubbingExceptionReporter(ExceptionReporter):
    """Django's error report, scrubbed whole: Django hides settings by name (KEY, TOKEN...),
    but not ``REDIS_URL`` or a password in an exception's message or a frame's variables."""

    def get_traceback_html(self) -> SafeString:
        # The page shows values HTML-escaped: a password with & or ' is written differently.
        forms = with_escaped(known_secrets(), html.escape)
        return mark_safe(scrub(super().get_traceback_html(), forms))

    def get_traceback_text(self) -> SafeString:
        return mark_safe(scrub(super().get_traceback_text(), known_secrets()))
