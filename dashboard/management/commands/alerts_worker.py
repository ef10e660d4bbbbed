"""``manage.py alerts_worker``: a worker for the background jobs (dashboard/tasks.py); several
may run, on several hosts. ``--once``: one round of everything due, then exit (cron, tests)."""

from __future__ import annotations

import logging
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from dashboard import tasks


class Command(BaseCommand):
    help = "Run the background jobs: alert checks, deliveries, digests, top-up follow-ups."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="one round, then exit")
        parser.add_argument(
            "--requeue",
            action="store_true",
            help="defer again every pending delivery and waiting top-up, then exit (once, "
            "after upgrading from a version without jobs, with no worker running)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["requeue"]:
            tasks.requeue_waiting()
            return
        if not options["once"]:
            self.stdout.write("alerts worker: started; Ctrl-C stops it")
            tasks.run_worker()
            self.stdout.write("alerts worker: stopped")
            return
        said = logging.StreamHandler(self.stdout)
        said.setLevel(logging.INFO)
        logging.getLogger(tasks.__name__).addHandler(said)
        try:
            tasks.run_once()
        finally:
            logging.getLogger(tasks.__name__).removeHandler(said)
