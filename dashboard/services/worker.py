"""The alerts worker's loop, for ``manage.py alerts_worker`` and for ``make run``'s thread.

Checks every rule each ``interval`` seconds and, every few seconds in between, sends the
deliveries that are due and follows up the top-ups still pending or of unknown outcome
(each on its own backoff). A round that fails is logged and the loop goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import close_old_connections

from dashboard.services import alerts, digest, notify, topup_followup

logger = logging.getLogger(__name__)

#: Deliveries due (retries) are looked for this often between two checks of the rules.
SEND_EVERY = 5.0

Say = Callable[[str], object]


def one_round(*, check: bool, say: Say) -> None:
    if check:
        for outcome in alerts.check_all():
            if outcome.fired is not None:
                say(f"fired: {outcome.fired.subject}")
        if sent := digest.send_due():
            say(f"weekly digests sent: {sent}")
    for attempt in notify.deliver_due():
        if not attempt.ok:
            say(f"delivery {attempt.delivery_id} failed: {attempt.error}")
    for followed in topup_followup.follow_up_due():
        if followed.status != "pending" or followed.note:
            say(f"top-up {followed.topup_id}: {followed.status}. {followed.note}".rstrip())


def run(stop: threading.Event, interval: float, say: Say) -> None:
    """Rounds until ``stop`` is set."""
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
            one_round(check=due, say=say)
        except Exception:
            logger.exception("alerts worker: the round failed; the next one will try again")
        finally:
            close_old_connections()
        stop.wait(min(SEND_EVERY, max(0.0, next_check - time.monotonic())))


def start_in_process(interval: float) -> threading.Thread:
    """The loop in a daemon thread of this process (``make run``: one process, whose
    in-process simulator the worker must share to see the same balances)."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run,
        args=(stop, interval, lambda line: logger.info("alerts worker: %s", line)),
        name="alerts-worker",
        daemon=True,
    )
    thread.start()
    return thread
