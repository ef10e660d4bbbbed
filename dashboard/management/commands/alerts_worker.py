"""``manage.py alerts_worker``: checks the alert rules on a schedule and sends what fired.

Every ``ALERTS_INTERVAL_SECONDS`` (default 300) it checks every enabled rule (reading each
account once, through the shared cache); every few seconds it sends the deliveries that are
due (new ones, and retries whose wait is over) and asks Cloudflare about the top-ups still
pending or of unknown outcome whose next follow-up is due, until they settle. Several copies
may run at once, on one host or several: a rule fires once (its state moves by a conditional
update, and a firing's key is unique), and a delivery is sent, or a top-up asked about, by
the one worker that claimed it. ``--once`` does one round and exits (cron, tests). SIGTERM
or Ctrl-C stops it between two steps.
"""

from __future__ import annotations

import signal
import threading
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from dashboard.services import worker


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
        if options["once"]:
            worker.one_round(check=True, say=self.stdout.write)
            return
        interval = options["interval"] or float(settings.ALERTS_INTERVAL_SECONDS)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"alerts worker: checking every {interval:g} s; Ctrl-C stops it")
        worker.run(stop, interval, say=self.stdout.write)
        self.stdout.write("alerts worker: stopped")
