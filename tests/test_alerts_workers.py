"""Two alerts workers at once send each alert once (see test_alerts.py for the setting).

The workers are threads with database connections of their own, so they see only committed
rows: these tests are transactional. The flush after them removes the roles a migration
made too; serialized_rollback and ``roles_back_after_module`` put them back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection

from dashboard import clock
from dashboard.models import AlertDelivery, AlertFiring, AlertRule
from dashboard.services import notify
from tests.conftest import ACCOUNT_ID, SAFETY_TIMEOUT, at_once, eventually
from tests.test_alert_delivery import firing, webhook
from tests.test_alerts import balance, make_rule, worker_round

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("roles_back_after_module"),
]
Kind = AlertRule.Kind
ROOT = Path(__file__).resolve().parent.parent


def test_two_workers_at_once_send_each_alert_once(travel, receiver, no_auto_topup):
    make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100, repeat_hours=0)
    make_rule(Kind.MONTH_TO_DATE_ABOVE, receiver, path="/mtd", amount=Decimal(1), repeat_hours=0)

    def worker(_number: int, together: threading.Barrier) -> None:
        for step in range(3):
            if step:
                together.wait(10)
            worker_round()

    at_once(2, worker)
    assert AlertFiring.objects.count() == 2
    assert receiver.count("/hook") == 1
    assert receiver.count("/mtd") == 1
    assert len(mail.outbox) == 2
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_two_worker_processes_send_each_alert_once(receiver, tmp_path, settings):
    """Two ``manage.py alerts_worker`` processes, each checking every second, on the same
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
    )
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    workers = []
    for log in logs:
        with log.open("w") as out:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "alerts_worker", "--interval", "1"],
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


def one_round() -> None:
    """One round of a worker in a thread of its own, as another process would run it."""
    try:
        notify.deliver_due()
    finally:
        connection.close()


def test_a_receiver_that_dribbles_is_cut_at_the_deadline_and_sent_once(
    receiver, monkeypatch, settings
) -> None:
    """Real time: two workers take turns while one dribbling receiver after another holds the
    first. Each is cut at the deadline, within its claim, so none is sent twice."""
    settings.ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = True
    monkeypatch.setattr(notify, "WEBHOOK_DEADLINE", 1.0)
    monkeypatch.setattr(notify, "CLAIM", timedelta(seconds=2.5))
    monkeypatch.setattr(notify, "PARALLEL", 1)  # one after the other: the third waits 2 s
    paths = ["/dribble-1", "/dribble-2", "/dribble-3"]
    for path in paths:
        made = firing(webhook(receiver.url(path, "dribble")))
        made.deliveries.update(next_attempt_at=clock.now())
    first = threading.Thread(target=one_round)
    first.start()
    while first.is_alive():
        notify.deliver_due()  # the second worker, looking all the time
        time.sleep(0.1)
    assert [receiver.count(path) for path in paths] == [1, 1, 1]
    for delivery in AlertDelivery.objects.all():
        assert delivery.attempts == 1 and delivery.last_error == "No answer in time"
        assert delivery.tries.count() == 1
