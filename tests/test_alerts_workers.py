"""Two alerts workers at once send each alert once (see test_alerts.py for the setting).

The workers are threads with database connections of their own, so they see only committed
rows: these tests are transactional. The flush after them removes the roles a migration
made too; serialized_rollback and ``roles_back_after_module`` put them back.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.core import mail

from dashboard.models import AlertDelivery, AlertFiring, AlertRule
from tests.test_alerts import balance, make_rule, worker_round

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("roles_back_after_module"),
]
Kind = AlertRule.Kind


def test_two_workers_at_once_send_each_alert_once(travel, receiver, no_auto_topup):
    make_rule(Kind.BALANCE_BELOW, receiver, amount=balance() + 100, repeat_hours=0)
    make_rule(Kind.MONTH_TO_DATE_ABOVE, receiver, path="/mtd", amount=Decimal(1), repeat_hours=0)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        from django.db import connection

        try:
            for _ in range(3):
                start.wait(10)
                worker_round()
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert AlertFiring.objects.count() == 2
    assert receiver.count("/hook") == 1
    assert receiver.count("/mtd") == 1
    assert len(mail.outbox) == 2
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}
