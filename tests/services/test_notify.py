"""Sending what fired (dashboard/services/notify.py): retries, backoff, hangs, bad URLs.

Webhooks go to a receiver on 127.0.0.1 that answers each path as the test says (204, 500, or
never); emails to Django's test outbox, or to a backend that fails. Most tests run each
delivery's job body in their own thread; those that run the engine's workers are
transactional (see also test_alerts_workers.py).
"""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail

from dashboard.infra import clock
from dashboard.models import AlertDelivery, AlertFiring, AlertRule
from dashboard.services import notify
from tests.conftest import ACCOUNT_ID, run_jobs
from tests.webhook_receiver import Receiver

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
        delivery = AlertDelivery.objects.create(
            firing=made, channel=channel, target=target, next_attempt_at=NOW
        )
        notify.defer(delivery.pk)
    return made


def deliver_due() -> list[notify.Attempt]:
    """Each pending delivery's job run once, in this thread, as a worker runs it; the attempts
    made (none for a delivery whose time has not come)."""
    pending = AlertDelivery.objects.filter(status=Status.PENDING).order_by("pk")
    attempts = [notify.deliver(pk) for pk in pending.values_list("pk", flat=True)]
    return [attempt for attempt in attempts if attempt.ok or attempt.error]


def webhook(url: str) -> tuple[str, str]:
    return (AlertDelivery.Channel.WEBHOOK, url)


def email(address: str) -> tuple[str, str]:
    return (AlertDelivery.Channel.EMAIL, address)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("roles_back_after_module")
def test_a_hanging_webhook_holds_up_no_other_delivery(now, receiver, monkeypatch, jobs):
    monkeypatch.setattr(notify, "WEBHOOK_DEADLINE", 1.0)
    firing(
        webhook(receiver.url("/hangs", "hang")),
        webhook(receiver.url("/works")),
        email("finance@example.com"),
    )
    started = time.monotonic()
    assert run_jobs() == 3
    took = time.monotonic() - started
    assert receiver.count("/works") == 1 and len(mail.outbox) == 1
    # Sent side by side: the hang cost its own timeout, once, not one per delivery behind it.
    assert took < 10, took
    hung = AlertDelivery.objects.get(target__endswith="/hangs")
    assert hung.status == Status.PENDING and hung.attempts == 1
    assert hung.last_error == "No answer in time"
    assert hung.next_attempt_at > NOW + timedelta(minutes=1) - timedelta(seconds=1)
    # The engine runs its job again later (real time), and then it is sent.
    (job,) = [job for job in jobs.jobs.values() if job["status"] == "todo"]
    assert job["scheduled_at"] > datetime.now(UTC) + timedelta(seconds=50)
    receiver.modes["/hangs"] = "ok"
    now[0] = hung.next_attempt_at
    assert run_jobs() == 1
    hung.refresh_from_db()
    assert (hung.status, hung.attempts, receiver.count("/hangs")) == (Status.SENT, 2, 2)


def test_a_failing_webhook_is_retried_with_backoff_then_given_up(now, receiver, db):
    firing(webhook(receiver.url("/fails", "fail")))
    waits = []
    for _attempt in range(notify.MAX_ATTEMPTS):
        (attempt,) = deliver_due()
        assert not attempt.ok and attempt.error == "HTTP 500"
        delivery = AlertDelivery.objects.get()
        if delivery.status == Status.FAILED:
            break
        waits.append(delivery.next_attempt_at - now[0])
        # Not sent again before its time...
        assert deliver_due() == []
        now[0] = delivery.next_attempt_at
    delivery = AlertDelivery.objects.get()
    assert delivery.status == Status.FAILED
    assert delivery.attempts == notify.MAX_ATTEMPTS == receiver.count("/fails")
    # Each wait longer than the last, from about a minute to a few hours (with jitter).
    assert waits == sorted(waits)
    assert timedelta(minutes=1) <= waits[0] < timedelta(minutes=2)
    assert waits[-1] >= timedelta(hours=3)
    assert deliver_due() == []  # given up: never sent again
    # Each attempt is kept, with what happened.
    tries = list(delivery.tries.values_list("ok", "error"))
    assert tries == [(False, "HTTP 500")] * notify.MAX_ATTEMPTS


def test_a_webhook_that_recovers_is_sent_once(now, receiver, db):
    url = receiver.url("/flaky", "fail")
    firing(webhook(url))
    deliver_due()
    receiver.modes["/flaky"] = "ok"
    now[0] = AlertDelivery.objects.get().next_attempt_at
    (attempt,) = deliver_due()
    assert attempt.ok
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (Status.SENT, 2, "")
    assert list(delivery.tries.values_list("ok", "error")) == [(False, "HTTP 500"), (True, "")]
    assert deliver_due() == []
    assert receiver.count("/flaky") == 2


def test_a_failing_email_backend_is_retried_and_reported(now, settings, db):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": _closed_port(), "timeout": 2},
        }
    }
    firing(email("finance@example.com"))
    (attempt,) = deliver_due()
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
        # Not globally routable either: carrier-grade NAT, IETF protocol assignments, benchmarks,
        # an IPv4 address inside IPv6 (mapped, 6to4, NAT64), broadcast and multicast.
        ("https://100.64.0.1/hook", False),
        ("https://192.0.0.1/hook", False),
        ("https://198.18.0.1/hook", False),
        ("https://[::ffff:10.0.0.1]/hook", False),
        ("https://[2002:a00:1::]/hook", False),
        ("https://[64:ff9b::a00:1]/hook", False),
        ("https://255.255.255.255/hook", False),
        ("https://224.0.0.1/hook", False),
        ("https://8.8.8.8/hook", True),
        ("https://[2606:4700::1111]/hook", True),
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
    for url in ("https://127.0.0.1/hook", "https://[::ffff:127.0.0.1]/hook"):
        with pytest.raises(notify.WebhookURLError, match="private or internal"):
            notify.check_webhook_url(url)


def test_a_host_name_that_resolves_inside_is_refused_when_sending(now, settings, db) -> None:
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = False
    # "localhost" passes the form (a name), and resolves to 127.0.0.1 when sending.
    assert notify.check_webhook_url("https://localhost:9/hook")
    firing(webhook("https://localhost:9/hook"))
    (attempt,) = deliver_due()
    assert not attempt.ok and attempt.error == notify.INTERNAL


def test_a_webhook_url_is_shown_without_its_secret_path() -> None:
    assert notify.shown_url("https://hooks.slack.com/services/T0/B0/secret") == (
        "https://hooks.slack.com/…"
    )
    assert notify.shown_url("http://127.0.0.1:8080/x?token=1") == "http://127.0.0.1:8080/…"


def test_no_secret_path_reaches_the_log(now, receiver, caplog, db) -> None:
    firing(webhook(receiver.url("/secret-token-path", "fail")))
    with caplog.at_level("INFO"):
        deliver_due()
    assert "secret-token-path" not in caplog.text
    assert any(getattr(r, "target", "").endswith("/…") for r in caplog.records)


def resolving(monkeypatch: pytest.MonkeyPatch, host: str, *answers: str) -> list[str]:
    """``host`` resolves to each of ``answers`` in turn (as a DNS name whose answer changes);
    returns the answers given so far."""
    real = socket.getaddrinfo
    given: list[str] = []

    def getaddrinfo(name: str, *args: Any, **kwargs: Any) -> Any:
        if name != host:
            return real(name, *args, **kwargs)
        given.append(answers[min(len(given), len(answers) - 1)])
        return real(given[-1], *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


@pytest.mark.parametrize("address", ["100.64.0.1", "192.0.0.1", "10.0.0.5", "::ffff:10.0.0.1"])
def test_it_refuses_a_host_name_that_resolves_to_an_address_not_global(
    now, monkeypatch, address, db
) -> None:
    resolving(monkeypatch, "hooks.example.com", address)
    firing(webhook("https://hooks.example.com/hook"))
    (attempt,) = deliver_due()
    assert not attempt.ok and attempt.error == notify.INTERNAL


def test_it_connects_to_the_address_it_checked(now, receiver, monkeypatch, db) -> None:
    # Checked: loopback (allowed in tests). Asked again, the name would say a private address.
    given = resolving(monkeypatch, "localhost", "127.0.0.1", "10.255.255.1")
    port = receiver.server.server_address[1]
    receiver.modes["/rebind"] = "ok"
    firing(webhook(f"http://localhost:{port}/rebind"))
    (attempt,) = deliver_due()
    assert attempt.ok, attempt.error
    assert receiver.count("/rebind") == 1
    assert given == ["127.0.0.1"]  # looked up once: the second answer was never asked for


def test_it_uses_no_proxy_from_the_environment(now, receiver, monkeypatch, db) -> None:
    with Receiver() as proxy:
        address = f"http://127.0.0.1:{proxy.server.server_address[1]}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, address)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        firing(webhook(receiver.url("/direct")))
        (attempt,) = deliver_due()
        assert attempt.ok, attempt.error
        assert receiver.count("/direct") == 1
        assert not proxy.received


def test_it_reads_no_endless_answer(now, receiver, db) -> None:
    firing(webhook(receiver.url("/endless-body", "endless")))
    firing(webhook(receiver.url("/endless-headers", "long-headers")))
    started = time.monotonic()
    attempts = deliver_due()
    assert time.monotonic() - started < 5
    # A 200 is a 200 however long the body: it is not read. Headers past a few KB are refused.
    outcomes = dict(AlertDelivery.objects.values_list("target", "last_error"))
    assert sorted(a.ok for a in attempts) == [False, True]
    assert outcomes[receiver.url("/endless-body", "endless")] == ""
    assert outcomes[receiver.url("/endless-headers", "long-headers")] == "The answer was too long"
