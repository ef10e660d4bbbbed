"""Sending alert firings by email and to webhooks, each retried with backoff until sent.

Each delivery is a job of its own (``TASK``), so a hanging webhook holds up no other. A webhook
URL is a secret (Slack's lets anyone post): it is shown and logged as scheme and host only. It
is sent to a globally routable address only: the host is looked up once, every answer checked,
and the connection pinned to a checked address (TLS still checks the name); no proxy is read
from the environment, and ``WEBHOOK_DEADLINE`` and ``MAX_ANSWER_BYTES`` bound the exchange.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpcore
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from dashboard.infra import clock, jobs
from dashboard.models import AlertDelivery, AlertDeliveryAttempt, AlertFiring, AlertRule

logger = logging.getLogger(__name__)

Status = AlertDelivery.Status
#: Waits after the 1st, 2nd... failed attempt; after the last, the delivery is given up.
BACKOFF = tuple(timedelta(minutes=minutes) for minutes in (1, 5, 15, 60, 180))
MAX_ATTEMPTS = len(BACKOFF) + 1
#: The job that sends one delivery (dashboard.tasks).
TASK = "deliver_alert"
#: Seconds for a whole webhook exchange, connection to answer: per-read timeouts alone let a
#: receiver sending a byte a second hold the worker for ever.
WEBHOOK_DEADLINE = 10.0
WEBHOOK_CONNECT_TIMEOUT = 3.0
#: At most this much of the answer is read (its status line and headers; the body is not).
MAX_ANSWER_BYTES = 8 * 1024
USER_AGENT = "ai-gateway-spend-dashboard alerts"


class WebhookURLError(ValueError):
    pass


def check_webhook_url(url: str) -> str:
    """The URL if a webhook may go to it (https; http to this machine only in tests); raises
    WebhookURLError otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError as err:
        raise WebhookURLError("This is not a valid URL.") from err
    if not host or parts.scheme not in ("https", "http"):
        raise WebhookURLError("A webhook URL starts with https:// and names a host.")
    if parts.username or parts.password:
        raise WebhookURLError("Put no user name or password in a webhook URL.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None  # a host name: its addresses are checked when sending
    loopback = host == "localhost" or (literal is not None and literal.is_loopback)
    if parts.scheme == "http" and not (settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK and loopback):
        raise WebhookURLError("A webhook URL must use https://.")
    if literal is not None and _internal(literal):
        raise WebhookURLError(INTERNAL)
    return url


INTERNAL = "A webhook may not go to a private or internal address."
#: IPv6 ranges that carry an IPv4 address to a gateway (6to4, NAT64), which may reach inside.
_IPV4_GATEWAYS = tuple(
    ipaddress.ip_network(n) for n in ("2002::/16", "64:ff9b::/96", "64:ff9b:1::/48")
)


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Anything but a globally routable unicast address (private, CGNAT, cloud metadata...):
    a webhook must not reach the dashboard's own network. Loopback only for tests."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return not settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK
    if isinstance(address, ipaddress.IPv6Address) and any(
        address in network for network in _IPV4_GATEWAYS
    ):
        return True
    return not address.is_global or address.is_multicast


def check_webhook_host(url: str) -> list[str]:
    """The addresses of the URL's host, looked up once: the webhook goes to these only.
    Raises WebhookURLError if any is internal."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise WebhookURLError(f"The webhook's host could not be found ({host}).") from err
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
    if not addresses or any(_internal(ipaddress.ip_address(a)) for a in addresses):
        raise WebhookURLError(INTERNAL)
    return addresses


def shown_url(url: str) -> str:
    """A webhook URL as pages and logs show it: scheme and host, never the secret path."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or "?"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "(malformed URL)"
    return f"{parts.scheme}://{netloc}/…"


def shown_target(delivery: AlertDelivery) -> str:
    if delivery.channel == AlertDelivery.Channel.WEBHOOK:
        return shown_url(delivery.target)
    return delivery.target


def account_name(account_id: str) -> str:
    return str(settings.BILLING_ACCOUNTS.get(account_id, account_id))


def alerts_url(account_id: str) -> str:
    """A link to the account's Alerts page, with ``DASHBOARD_URL`` (else none)."""
    base = settings.DASHBOARD_URL
    return f"{base}/accounts/{account_id}/alerts/" if base else ""


def webhook_payload(firing: AlertFiring, rule: AlertRule) -> dict[str, object]:
    link = alerts_url(rule.account_id)
    if rule.webhook_format == AlertRule.WebhookFormat.SLACK:
        text = f"*{firing.subject}*\n{firing.message}"
        if link:
            text += f"\n<{link}|Open the alerts page>"
        return {"text": text}
    return {
        "type": "alert",
        "kind": rule.kind,
        "account_id": rule.account_id,
        "account_name": account_name(rule.account_id),
        "subject": firing.subject,
        "message": firing.message,
        "fired_at": firing.fired_at.isoformat(),
        "episode": firing.episode,
        "repeat": firing.repeat,
        "facts": firing.facts,
        "url": link,
    }


def email(
    subject: str, template: str, context: dict[str, object], to: str
) -> EmailMultiAlternatives:
    """An email in text and HTML, from ``template``.txt and .html."""
    text = render_to_string(f"{template}.txt", context)
    message = EmailMultiAlternatives(f"[AI Gateway spend] {subject}", text, to=[to])
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    ok: bool
    error: str = ""
    #: When to try again (None: sent, given up, or nothing to send).
    retry_in: timedelta | None = None


def defer(*delivery_ids: int) -> None:
    """Defers each delivery's job, once (its retries follow from it)."""
    for delivery_id in delivery_ids:
        jobs.defer(TASK, lock=f"delivery-{delivery_id}", delivery_id=delivery_id)


def deliver(delivery_id: int) -> Attempt:
    """One attempt at a pending delivery whose time has come, recorded with its outcome."""
    delivery = (
        AlertDelivery.objects.select_related("firing", "firing__rule")
        .filter(pk=delivery_id, status=Status.PENDING)
        .first()
    )
    if delivery is None:
        return Attempt(delivery_id, True)  # sent or given up already
    now = clock.now()
    if delivery.next_attempt_at > now:
        return Attempt(delivery_id, False, retry_in=delivery.next_attempt_at - now)
    return _record(delivery, send(delivery), now)


def send(delivery: AlertDelivery) -> Attempt:
    """One attempt; never raises (the error is in the Attempt, in words without secrets)."""
    firing = delivery.firing
    rule = firing.rule
    try:
        if delivery.channel == AlertDelivery.Channel.WEBHOOK:
            url = check_webhook_url(delivery.target)
            status = post_webhook(url, json.dumps(webhook_payload(firing, rule)).encode())
            if not 200 <= status < 300:
                return Attempt(delivery.pk, False, f"HTTP {status}")
        else:
            context = {
                "firing": firing,
                "rule": rule,
                "account_name": account_name(rule.account_id),
                "url": alerts_url(rule.account_id),
            }
            email(firing.subject, "dashboard/email/alert", context, delivery.target).send()
    except WebhookURLError as err:
        return Attempt(delivery.pk, False, str(err))
    except AnswerTooLong:
        return Attempt(delivery.pk, False, "The answer was too long")
    except httpcore.TimeoutException:
        return Attempt(delivery.pk, False, "No answer in time")
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as err:
        return Attempt(delivery.pk, False, f"Could not connect ({type(err).__name__})")
    except Exception as err:  # an email backend's errors have no common base class
        logger.warning(
            "alert delivery failed",
            extra={"delivery": delivery.pk, "channel": delivery.channel},
            exc_info=True,
        )
        return Attempt(delivery.pk, False, f"{type(err).__name__}")
    return Attempt(delivery.pk, True)


def post_webhook(url: str, body: bytes) -> int:
    """POSTs ``body`` to a checked URL; the answer's status. Raises WebhookURLError,
    AnswerTooLong, or httpcore's errors. httpcore, not httpx: its network backend is where the
    connection is pinned and every read bounded, and it reads no proxy from the environment."""
    backend = _PinnedBackend(check_webhook_host(url), time.monotonic() + WEBHOOK_DEADLINE)
    headers = [("Content-Type", "application/json"), ("User-Agent", USER_AGENT)]
    with (
        httpcore.ConnectionPool(network_backend=backend, max_connections=1) as pool,
        pool.stream("POST", url, headers=headers, content=body) as response,
    ):
        return response.status  # the body is not read


class AnswerTooLong(Exception):
    pass


class _PinnedBackend(httpcore.SyncBackend):
    """Connects to the checked addresses only, and ends every step by one deadline."""

    def __init__(self, addresses: list[str], deadline: float) -> None:
        self.addresses = addresses
        self.deadline = deadline
        self.received = 0

    def left(self, timeout: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.TimeoutException("the webhook's deadline passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in self.addresses:
            try:
                stream = super().connect_tcp(
                    address, port, self.left(WEBHOOK_CONNECT_TIMEOUT), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                failure = err  # the next checked address, as a resolver's client would
                continue
            return _BoundedStream(stream, self)
        raise failure


class _BoundedStream(httpcore.NetworkStream):
    """Reads and writes end by the backend's deadline; reads stop at ``MAX_ANSWER_BYTES``."""

    def __init__(self, stream: httpcore.NetworkStream, backend: _PinnedBackend) -> None:
        self.stream = stream
        self.backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        allowed = MAX_ANSWER_BYTES - self.backend.received
        if allowed <= 0:
            raise AnswerTooLong
        data = self.stream.read(min(max_bytes, allowed), self.backend.left(timeout))
        self.backend.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.backend.left(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self.stream.start_tls(ssl_context, server_hostname, self.backend.left(timeout))
        return _BoundedStream(tls, self.backend)

    def get_extra_info(self, info: str) -> object:
        return self.stream.get_extra_info(info)


def _record(delivery: AlertDelivery, attempt: Attempt, now: datetime) -> Attempt:
    attempts = delivery.attempts + 1
    error = attempt.error[:300]
    wait = None
    if attempt.ok:
        said, fields = "sent", {"status": Status.SENT, "sent_at": clock.now()}
    elif attempts >= MAX_ATTEMPTS:
        said, fields = "given up", {"status": Status.FAILED}
    else:
        wait = BACKOFF[attempts - 1] * random.uniform(1.0, 1.2)
        said, fields = "will retry", {"next_attempt_at": now + wait}
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts, last_error=error, **fields
    )
    AlertDeliveryAttempt.objects.create(delivery=delivery, at=now, ok=attempt.ok, error=error)
    log = logger.info if attempt.ok else logger.warning
    log(
        "alert delivery %s",
        said,
        extra={
            "delivery": delivery.pk,
            "channel": delivery.channel,
            "target": shown_target(delivery),
            "attempt": attempts,
            "error": attempt.error,
        },
    )
    return Attempt(delivery.pk, attempt.ok, attempt.error, wait)
