"""Sending what fired (dashboard/services/notify.py): retries, backoff, hangs, bad URLs.

Webhooks go to a receiver on 127.0.0.1 that answers each path as the test says (204, 500, or
never); emails to Django's test outbox, or to a backend that fails.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail

from dashboard import clock
from dashboard.models import AlertDelivery, AlertFiring, AlertRule
from dashboard.services import notify
from tests.conftest import ACCOUNT_ID

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
Status = AlertDelivery.Status


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch, settings) -> list[datetime]:
    """The dashboard's clock, settable: ``now[0] = ...``."""
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    moment = [NOW]
    monkeypatch.setattr(clock, "now", lambda: moment[0])
    return moment


def firing(*targets: tuple[str, str]) -> AlertFiring:
    rule = AlertRule.objects.create(
        account_id=ACCOUNT_ID, kind=AlertRule.Kind.BALANCE_BELOW, created_by="test"
    )
    made = AlertFiring.objects.create(
        rule=rule, episode=1, fired_at=NOW, subject="Balance below $50.00", message="Low."
    )
    for channel, target in targets:
        AlertDelivery.objects.create(
            firing=made, channel=channel, target=target, next_attempt_at=NOW
        )
    return made


def webhook(url: str) -> tuple[str, str]:
    return (AlertDelivery.Channel.WEBHOOK, url)


def email(address: str) -> tuple[str, str]:
    return (AlertDelivery.Channel.EMAIL, address)


def test_a_hanging_webhook_holds_up_no_other_delivery(now, receiver, monkeypatch, db):
    monkeypatch.setattr(notify, "WEBHOOK_TIMEOUT", 1.0)
    firing(
        webhook(receiver.url("/hangs", "hang")),
        webhook(receiver.url("/works")),
        email("finance@example.com"),
    )
    started = time.monotonic()
    attempts = notify.deliver_due()
    took = time.monotonic() - started
    assert sorted(a.ok for a in attempts) == [False, True, True]
    assert receiver.count("/works") == 1 and len(mail.outbox) == 1
    # Sent side by side: the hang cost its own timeout, once, not one per delivery behind it.
    assert took < 10, took
    hung = AlertDelivery.objects.get(target__endswith="/hangs")
    assert hung.status == Status.PENDING and hung.attempts == 1
    assert hung.last_error == "No answer in time"
    assert hung.next_attempt_at > NOW + timedelta(minutes=1) - timedelta(seconds=1)


def test_a_failing_webhook_is_retried_with_backoff_then_given_up(now, receiver, db):
    firing(webhook(receiver.url("/fails", "fail")))
    waits = []
    for _attempt in range(notify.MAX_ATTEMPTS):
        (attempt,) = notify.deliver_due()
        assert not attempt.ok and attempt.error == "HTTP 500"
        delivery = AlertDelivery.objects.get()
        if delivery.status == Status.FAILED:
            break
        waits.append(delivery.next_attempt_at - now[0])
        # Not sent again before its time...
        assert notify.deliver_due() == []
        now[0] = delivery.next_attempt_at
    delivery = AlertDelivery.objects.get()
    assert delivery.status == Status.FAILED
    assert delivery.attempts == notify.MAX_ATTEMPTS == receiver.count("/fails")
    # Each wait longer than the last, from about a minute to a few hours (with jitter).
    assert waits == sorted(waits)
    assert timedelta(minutes=1) <= waits[0] < timedelta(minutes=2)
    assert waits[-1] >= timedelta(hours=3)
    assert notify.deliver_due() == []  # given up: never sent again
    # Each attempt is kept, with what happened.
    tries = list(delivery.tries.values_list("ok", "error"))
    assert tries == [(False, "HTTP 500")] * notify.MAX_ATTEMPTS


def test_a_webhook_that_recovers_is_sent_once(now, receiver, db):
    url = receiver.url("/flaky", "fail")
    firing(webhook(url))
    notify.deliver_due()
    receiver.modes["/flaky"] = "ok"
    now[0] = AlertDelivery.objects.get().next_attempt_at
    (attempt,) = notify.deliver_due()
    assert attempt.ok
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (Status.SENT, 2, "")
    assert list(delivery.tries.values_list("ok", "error")) == [(False, "HTTP 500"), (True, "")]
    assert notify.deliver_due() == []
    assert receiver.count("/flaky") == 2


def test_a_failing_email_backend_is_retried_and_reported(now, settings, db):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": _closed_port(), "timeout": 2},
        }
    }
    firing(email("finance@example.com"))
    (attempt,) = notify.deliver_due()
    assert not attempt.ok and attempt.error == "ConnectionRefusedError"
    delivery = AlertDelivery.objects.get()
    assert delivery.status == Status.PENDING and delivery.attempts == 1
    assert delivery.last_error == "ConnectionRefusedError"


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_claimed_delivery_is_not_sent_by_another_worker(now, receiver, db):
    firing(webhook(receiver.url("/once")))
    delivery = AlertDelivery.objects.get()
    # Another worker claimed it a moment ago and is sending it.
    AlertDelivery.objects.filter(pk=delivery.pk).update(claimed_until=NOW + notify.CLAIM)
    assert notify.deliver_due() == []
    # That worker died: past its claim, the delivery is taken up again.
    now[0] = NOW + notify.CLAIM + timedelta(seconds=1)
    (attempt,) = notify.deliver_due()
    assert attempt.ok and receiver.count("/once") == 1


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret", True),
        ("https://example.com:8443/hook", True),
        ("http://example.com/hook", False),
        ("http://127.0.0.1:9/hook", True),  # loopback, allowed in tests
        ("http://[::1]:9/hook", True),
        ("ftp://example.com/hook", False),
        ("https://user:pw@example.com/hook", False),
        ("https:///nohost", False),
        ("https://example.com:notaport/", False),
        ("javascript:alert(1)", False),
        # The dashboard's own network: private, link-local (cloud metadata), unspecified.
        ("https://10.0.0.5/hook", False),
        ("https://192.168.1.1/hook", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://[fd00::1]/hook", False),
        ("https://0.0.0.0/hook", False),
    ],
)
def test_webhook_urls_must_be_https(now, url: str, allowed: bool) -> None:
    if allowed:
        assert notify.check_webhook_url(url) == url
    else:
        with pytest.raises(notify.WebhookURLError):
            notify.check_webhook_url(url)


def test_http_to_loopback_is_refused_outside_tests(settings) -> None:
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = False
    with pytest.raises(notify.WebhookURLError, match="https"):
        notify.check_webhook_url("http://127.0.0.1:9/hook")
    with pytest.raises(notify.WebhookURLError, match="private or internal"):
        notify.check_webhook_url("https://127.0.0.1/hook")


def test_a_host_name_that_resolves_inside_is_refused_when_sending(now, settings, db) -> None:
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = False
    # "localhost" passes the form (a name), and resolves to 127.0.0.1 when sending.
    assert notify.check_webhook_url("https://localhost:9/hook")
    firing(webhook("https://localhost:9/hook"))
    (attempt,) = notify.deliver_due()
    assert not attempt.ok and attempt.error == notify.INTERNAL


def test_a_webhook_url_is_shown_without_its_secret_path() -> None:
    assert notify.shown_url("https://hooks.slack.com/services/T0/B0/secret") == (
        "https://hooks.slack.com/…"
    )
    assert notify.shown_url("http://127.0.0.1:8080/x?token=1") == "http://127.0.0.1:8080/…"


def test_no_secret_path_reaches_the_log(now, receiver, caplog, db) -> None:
    firing(webhook(receiver.url("/secret-token-path", "fail")))
    with caplog.at_level("INFO"):
        notify.deliver_due()
    assert "secret-token-path" not in caplog.text
    assert any(getattr(r, "target", "").endswith("/…") for r in caplog.records)
