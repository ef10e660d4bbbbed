"""Sending alert firings: by email and to webhooks, each retried with backoff until sent.

A delivery is claimed before it is sent (a conditional update sets ``claimed_until``), so
of several workers exactly one sends it; a worker that dies holding a claim lets it go when
the claim expires. Deliveries are sent in parallel, each bounded by its own timeout: a webhook
that hangs or fails holds up no other delivery. A failed delivery waits longer after each
attempt (``BACKOFF``) and is given up after the last one; both are shown on the Alerts page.

A webhook URL is a secret (a Slack incoming-webhook URL lets anyone post to the channel):
it is shown and logged as its scheme and host only (:func:`shown_url`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.template.loader import render_to_string

from dashboard import clock
from dashboard.models import AlertDelivery, AlertDeliveryAttempt, AlertFiring, AlertRule

logger = logging.getLogger(__name__)

Status = AlertDelivery.Status
#: Waits after the 1st, 2nd... failed attempt; after the last, the delivery is given up.
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
#: How long a worker holds a delivery it is sending; past it, another worker may take it.
CLAIM = timedelta(minutes=2)
#: At most this many deliveries are sent at once by one worker.
PARALLEL = 8
WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
USER_AGENT = "ai-gateway-spend-dashboard alerts"


class WebhookURLError(ValueError):
    pass


def check_webhook_url(url: str) -> str:
    """The URL if a webhook may be sent to it: https, or http to this machine when
    ``ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK`` is on (tests). Raises WebhookURLError otherwise."""
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
    if parts.scheme == "http" and not (
        settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK and _is_loopback(host)
    ):
        raise WebhookURLError("A webhook URL must use https://.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return url  # a host name: its addresses are checked when sending (check_webhook_host)
    if _internal(literal):
        raise WebhookURLError(INTERNAL)
    return url


INTERNAL = "A webhook may not go to a private or internal address."


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A private, loopback, link-local (cloud metadata), reserved or multicast address: a
    webhook must not reach the dashboard's own network. Loopback is allowed for tests."""
    if address.is_loopback:
        return not settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK
    return (
        address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


def check_webhook_host(url: str) -> None:
    """Refuses a host name that resolves to an internal address (WebhookURLError)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as err:
        raise WebhookURLError(f"The webhook's host could not be found ({host}).") from err
    for *_, sockaddr in found:
        if _internal(ipaddress.ip_address(sockaddr[0])):
            raise WebhookURLError(INTERNAL)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


# ---------------------------------------------------------------- what is sent


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


def email_message(firing: AlertFiring, rule: AlertRule, to: str) -> EmailMultiAlternatives:
    context = {
        "firing": firing,
        "rule": rule,
        "account_name": account_name(rule.account_id),
        "url": alerts_url(rule.account_id),
    }
    text = render_to_string("dashboard/email/alert.txt", context)
    html = render_to_string("dashboard/email/alert.html", context)
    message = EmailMultiAlternatives(f"[AI Gateway spend] {firing.subject}", text, to=[to])
    message.attach_alternative(html, "text/html")
    return message


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    ok: bool
    error: str = ""


def deliver_due(now: datetime | None = None, limit: int = 100) -> list[Attempt]:
    """Claims and sends every delivery that is due, in parallel; records each outcome."""
    now = now or clock.now()
    claimable = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    due = list(
        AlertDelivery.objects.filter(claimable, status=Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    mine = [
        pk
        for pk in due
        if AlertDelivery.objects.filter(claimable, pk=pk, status=Status.PENDING).update(
            claimed_until=now + CLAIM
        )
    ]
    if not mine:
        return []
    deliveries = list(
        AlertDelivery.objects.filter(pk__in=mine).select_related("firing", "firing__rule")
    )
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(deliveries))) as pool:
        attempts = list(pool.map(_send_and_close, deliveries))
    for delivery, attempt in zip(deliveries, attempts, strict=True):
        _record(delivery, attempt, now)
    return attempts


def _send_and_close(delivery: AlertDelivery) -> Attempt:
    from django.db import connection

    try:
        return send(delivery)
    finally:
        connection.close()  # this thread's database connection, if the templates opened one


def send(delivery: AlertDelivery) -> Attempt:
    """One attempt; never raises (the error is in the Attempt, in words without secrets)."""
    firing = delivery.firing
    rule = firing.rule
    try:
        if delivery.channel == AlertDelivery.Channel.WEBHOOK:
            url = check_webhook_url(delivery.target)
            check_webhook_host(url)
            body = json.dumps(webhook_payload(firing, rule)).encode()
            response = httpx.post(
                url,
                content=body,
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
                timeout=WEBHOOK_TIMEOUT,
                follow_redirects=False,
            )
            if not 200 <= response.status_code < 300:
                return Attempt(delivery.pk, False, f"HTTP {response.status_code}")
        else:
            email_message(firing, rule, delivery.target).send()
    except WebhookURLError as err:
        return Attempt(delivery.pk, False, str(err))
    except httpx.TimeoutException:
        return Attempt(delivery.pk, False, "No answer in time")
    except httpx.HTTPError as err:
        return Attempt(delivery.pk, False, f"Could not connect ({type(err).__name__})")
    except Exception as err:  # an email backend's errors have no common base class
        logger.warning(
            "alert delivery failed",
            extra={"delivery": delivery.pk, "channel": delivery.channel},
            exc_info=True,
        )
        return Attempt(delivery.pk, False, f"{type(err).__name__}")
    return Attempt(delivery.pk, True)


def _record(delivery: AlertDelivery, attempt: Attempt, now: datetime) -> None:
    attempts = delivery.attempts + 1
    if attempt.ok:
        fields = {"status": Status.SENT, "sent_at": clock.now(), "last_error": ""}
    elif attempts >= MAX_ATTEMPTS:
        fields = {"status": Status.FAILED, "last_error": attempt.error[:300]}
    else:
        wait = BACKOFF[attempts - 1] * random.uniform(1.0, 1.2)
        fields = {"next_attempt_at": now + wait, "last_error": attempt.error[:300]}
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        attempts=attempts, claimed_until=None, **fields
    )
    AlertDeliveryAttempt.objects.create(
        delivery=delivery, at=now, ok=attempt.ok, error=attempt.error[:300]
    )
    log = logger.info if attempt.ok else logger.warning
    log(
        "alert delivery %s",
        "sent" if attempt.ok else ("given up" if attempts >= MAX_ATTEMPTS else "will retry"),
        extra={
            "delivery": delivery.pk,
            "channel": delivery.channel,
            "target": shown_target(delivery),
            "attempt": attempts,
            "error": attempt.error,
        },
    )
