"""Two alerts workers at once send each alert once, and a worker that dies loses nothing
(see test_alerts.py for the setting).

The workers (threads, or processes) run their jobs on database connections of their own, so
they see only committed rows: these tests are transactional, with the jobs in PostgreSQL. The
flush after them removes the roles a migration made too; serialized_rollback and
``roles_back_after_module`` put them back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection

from dashboard import tasks
from dashboard.infra import clock
from dashboard.models import AlertDelivery, AlertFiring, AlertRule
from dashboard.services import notify
from tests.conftest import ACCOUNT_ID, SAFETY_TIMEOUT, at_once, eventually
from tests.services.test_alerts import balance, make_rule
from tests.services.test_notify import firing, webhook

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("roles_back_after_module"),
    pytest.mark.real_jobs,
]
Kind = AlertRule.Kind
ROOT = Path(__file__).resolve().parents[2]


def test_two_workers_at_once_send_each_alert_once(travel, receiver, no_auto_topup):
    make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100, repeat_hours=0)
    make_rule(Kind.MONTH_TO_DATE_ABOVE, receiver, path="/mtd", amount=Decimal(1), repeat_hours=0)

    def worker(_number: int, together: threading.Barrier) -> None:
        for step in range(3):
            if step:
                together.wait(10)
            tasks.run_once()

    at_once(2, worker)
    assert AlertFiring.objects.count() == 2
    assert receiver.count("/hook") == 1
    assert receiver.count("/mtd") == 1
    assert len(mail.outbox) == 2
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}


def worker_env() -> dict[str, str]:
    """A worker process's environment: this test's database, the in-process simulator."""
    db = connection.settings_dict
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CLOUDFLARE_", "BILLING_", "REDIS_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DATABASE_URL=f"postgres://{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        EMAIL_URL="console://",
        ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK="true",
        LOG_LEVEL="WARNING",
        ALERTS_INTERVAL_SECONDS="10",
    )
    return env


def test_two_worker_processes_send_each_alert_once(receiver, tmp_path, settings):
    """Two ``manage.py alerts_worker`` processes, checking every 10 seconds, on the same
    database: each alert is sent once, by email and to the webhook."""
    assert connection.vendor == "postgresql", "run with DATABASE_URL=postgres://..."
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    for kind, path, values in [
        (Kind.BALANCE_BELOW, "/balance", {"amount": Decimal(10_000_000)}),
        (Kind.MONTH_TO_DATE_ABOVE, "/mtd", {"amount": Decimal("0.01")}),
    ]:
        AlertRule.objects.create(
            account_id=ACCOUNT_ID,
            kind=kind,
            emails="finance@example.com",
            webhooks=receiver.url(path),
            repeat_hours=0,
            created_by="test",
            **values,
        )
    env = worker_env()
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    workers = []
    for log in logs:
        with log.open("w") as out:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "alerts_worker"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        eventually(
            lambda: receiver.count("/balance") and receiver.count("/mtd"),
            "both alerts delivered",
            timeout=60,
        )
        time.sleep(3)  # a few more rounds of both workers
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(SAFETY_TIMEOUT)
    output = "".join(log.read_text() for log in logs)
    assert all(w.returncode == 0 for w in workers), output[-3000:]
    assert "alerts worker: stopped" in output
    assert receiver.count("/balance") == 1 and receiver.count("/mtd") == 1
    assert output.count("Subject: [AI Gateway spend]") == 2, output[-3000:]
    assert AlertFiring.objects.count() == 2
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_a_receiver_that_dribbles_is_cut_at_the_deadline_and_sent_once(
    receiver, monkeypatch, settings
) -> None:
    """Real time: two workers at once while dribbling receivers hold their deliveries. Each is
    cut at the deadline and sent once."""
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    monkeypatch.setattr(notify, "WEBHOOK_DEADLINE", 1.0)
    paths = ["/dribble-1", "/dribble-2", "/dribble-3"]
    for path in paths:
        firing(webhook(receiver.url(path, "dribble")))
    at_once(2, lambda _n, _barrier: tasks.run_once())
    assert [receiver.count(path) for path in paths] == [1, 1, 1]
    for delivery in AlertDelivery.objects.all():
        assert delivery.attempts == 1 and delivery.last_error == "No answer in time"
        assert delivery.tries.count() == 1


def test_a_worker_that_dies_sending_loses_no_delivery(receiver, monkeypatch, settings):
    """A worker process killed while a webhook holds its delivery: once its heartbeats have
    stopped for long enough, the next round runs the job again, and the alert is sent."""
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    made = firing(webhook(receiver.url("/slow", "hang")))
    made.deliveries.update(next_attempt_at=clock.now())
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "alerts_worker"],
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: receiver.count("/slow") == 1, "the worker sending", timeout=60)
    finally:
        worker.kill()
        worker.wait(SAFETY_TIMEOUT)
    receiver.modes["/slow"] = "ok"
    tasks.run_once()
    assert receiver.count("/slow") == 1  # its heartbeat is too recent: it may be alive
    monkeypatch.setattr(tasks, "STALLED_AFTER", 1)
    time.sleep(2)
    tasks.run_once()
    assert receiver.count("/slow") == 2
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 1)


def test_jobs_that_failed_over_a_month_ago_are_removed_and_recent_ones_kept():
    old, recent, cancelled = (tasks.deliver_alert.defer(delivery_id=n) for n in (1, 2, 3))
    with connection.cursor() as cursor:
        # Finished as a worker finishes them (the status change records its event)...
        cursor.execute(
            "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = ANY(%s)", [[old, recent]]
        )
        cursor.execute(
            "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = ANY(%s)", [[old, recent]]
        )
        # ...one of them 31 days ago.
        cursor.execute(
            "UPDATE procrastinate_events SET at = NOW() - INTERVAL '31 days' WHERE job_id = %s",
            [old],
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE procrastinate_jobs SET status = 'cancelled' WHERE id = %s", [cancelled]
        )
    tasks.run_once()  # alerts_worker --once (cron) cleans up too
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM procrastinate_jobs WHERE id = ANY(%s)", [[old, recent, cancelled]]
        )
        left = {row[0] for row in cursor.fetchall()}
    assert left == {recent, cancelled}
