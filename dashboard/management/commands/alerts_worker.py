"""``manage.py alerts_worker``: checks the alert rules on a schedule and sends what fired.

Every ``ALERTS_INTERVAL_SECONDS`` (default 300) it checks every enabled rule (reading each
account once, through the shared cache); every few seconds it sends the deliveries that are
due (new ones, and retries whose wait is over). Several copies may run at once, on one host
or several: a rule fires once (its state moves by a conditional update, and a firing's key
is unique) and a delivery is sent by the one worker that claimed it. ``--once`` does one
round and exits (cron, tests). SIGTERM or Ctrl-C stops it between two steps.
"""

from __future__ import annotations

import signal
import threading
import time
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from dashboard.services import alerts, notify

#: Deliveries due (retries) are looked for this often between two checks of the rules.
SEND_EVERY = 5.0


class Command(BaseCommand):
    help = "Check the alert rules on a schedule and send the alerts that fire."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="one round, then exit")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="seconds between two checks of the rules (default ALERTS_INTERVAL_SECONDS)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"] or float(settings.ALERTS_INTERVAL_SECONDS)
        if options["once"]:
            self.round(check=True)
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"alerts worker: checking every {interval:g} s; Ctrl-C stops it")
        next_check = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            due = now >= next_check
            if due:
                next_check = now + interval
            # A long-running process: drop a database connection that broke or grew old, as
            # Django does around each request.
            close_old_connections()
            try:
                self.round(check=due)
            finally:
                close_old_connections()
            stop.wait(min(SEND_EVERY, max(0.0, next_check - time.monotonic())))
        self.stdout.write("alerts worker: stopped")

    def round(self, *, check: bool) -> None:
        if check:
            for outcome in alerts.check_all():
                if outcome.fired is not None:
                    self.stdout.write(f"fired: {outcome.fired.subject}")
        for attempt in notify.deliver_due():
            if not attempt.ok:
                self.stdout.write(f"delivery {attempt.delivery_id} failed: {attempt.error}")
