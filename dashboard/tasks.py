"""Background jobs on procrastinate: alert checks and weekly digests on a schedule, each alert
delivery, each top-up's follow-up. In demo mode (SQLite) the serving process keeps the jobs in
memory and works them in a thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta
from typing import Any

from django import db
from django.conf import settings
from procrastinate import App, BaseRetryStrategy, RetryDecision, exceptions, jobs
from procrastinate.contrib.django import app
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.job_context import JobContext
from procrastinate.testing import InMemoryConnector

from dashboard.infra import clock
from dashboard.models import AlertDelivery, Topup
from dashboard.services import alerts, digest, notify, topup_followup, topups

logger = logging.getLogger(__name__)

#: Jobs one worker runs at once: deliveries side by side, so a hanging webhook holds up none.
PARALLEL = 8
#: Seconds without a heartbeat (sent every 10) after which a worker's jobs are run again.
STALLED_AFTER = 60


class RetryIn(Exception):
    """Raised by a job to be run again after ``wait``."""

    def __init__(self, wait: timedelta) -> None:
        super().__init__(f"again in {wait}")
        self.wait = wait


class AsAsked(BaseRetryStrategy):
    """Again when the job asks (RetryIn); after any other error, again in a minute, 10 times."""

    def get_retry_decision(
        self, *, exception: BaseException, job: jobs.Job
    ) -> RetryDecision | None:
        if isinstance(exception, RetryIn):
            return RetryDecision(retry_in={"seconds": int(exception.wait.total_seconds())})
        return RetryDecision(retry_in={"minutes": 1}) if job.attempts < 10 else None


@app.periodic(cron=settings.ALERTS_CRON)
@app.task(name="check_alerts", queueing_lock="check_alerts", lock="check_alerts")
def check_alerts(timestamp: int = 0) -> None:
    """Every rule checked, the weekly digests due, and top-ups a dying process left taken up."""
    for outcome in alerts.check_all():
        if outcome.fired is not None:
            logger.info("fired: %s", outcome.fired.subject)
    if sent := digest.send_due():
        logger.info("weekly digests sent: %s", sent)
    topup_followup.adopt_abandoned(clock.now())


@app.task(name=notify.TASK, retry=AsAsked())
def deliver_alert(delivery_id: int) -> None:
    attempt = notify.deliver(delivery_id)
    if not attempt.ok:
        logger.info("delivery %s failed: %s", attempt.delivery_id, attempt.error)
    if attempt.retry_in is not None:
        raise RetryIn(attempt.retry_in)


@app.task(name=topups.FOLLOW_UP_TASK, retry=AsAsked())
def follow_up_topup(topup_id: int) -> None:
    """Defers the next follow-up rather than being retried (a page may defer one too)."""
    followed = topup_followup.follow_up(topup_id)
    if followed.status != "pending" or followed.note:
        logger.info(f"top-up {topup_id}: {followed.status}. {followed.note}".rstrip())
    if followed.retry_in is not None:
        topups.defer_follow_up(topup_id, followed.retry_in)


@app.periodic(cron="* * * * *")
@app.task(name="retry_stalled_jobs", queueing_lock="retry_stalled_jobs", pass_context=True)
async def retry_stalled_jobs(context: JobContext, timestamp: int = 0) -> None:
    """The jobs of a worker that died (no heartbeat for STALLED_AFTER s) are run again."""
    manager = context.app.job_manager
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER):
        logger.warning("job %s of a worker that stopped: run again", job.call_string)
        try:
            await manager.retry_job(job)
        except exceptions.UniqueViolation:  # the same job waits already (its queueing lock)
            await manager.finish_job(job, jobs.Status.ABORTED, delete_job=False)


#: Failed, cancelled and aborted jobs are kept this long for an operator to look into (the
#: successful ones go at once: WORKER_OPTIONS); then the daily clean-up removes them.
KEEP_FINISHED_HOURS = 30 * 24


@app.periodic(cron="17 3 * * *")
@app.task(name="remove_old_jobs", queueing_lock="remove_old_jobs", pass_context=True)
async def remove_old_jobs(context: JobContext, timestamp: int = 0) -> None:
    await context.app.job_manager.delete_old_jobs(
        nb_hours=KEEP_FINISHED_HOURS,
        include_failed=True,
        include_cancelled=True,
        include_aborted=True,
    )


def close_connection(call_next: Any, context: JobContext, worker: Any) -> Any:
    """Closes each job's database connection: the worker's threads hold none between jobs."""
    try:
        return call_next()
    finally:
        db.connection.close()


def worker_app(*, periodic: bool) -> App:
    """The same tasks on a connection pool of its own (jobs are deferred on Django's)."""
    connector = app.connector
    if isinstance(connector, DjangoConnector):
        connector = connector.get_worker_connector()
    worker = App(connector=connector, worker_defaults={"task_middleware": [close_connection]})
    worker.tasks = app.tasks
    if periodic:
        worker.periodic_registry = app.periodic_registry
    return worker


WORKER_OPTIONS: dict[str, Any] = {"concurrency": PARALLEL, "delete_jobs": "successful"}


def run_worker(*, install_signal_handlers: bool = True) -> None:
    """``manage.py alerts_worker``: runs jobs (and defers the periodic ones) until stopped."""
    worker_app(periodic=True).run_worker(
        install_signal_handlers=install_signal_handlers, **WORKER_OPTIONS
    )


def run_once() -> int:
    """``alerts_worker --once``: the checks, stalled jobs and clean-up deferred now, then every
    job due run (see :func:`run_due`)."""
    for task in (check_alerts, retry_stalled_jobs, remove_old_jobs):
        with contextlib.suppress(exceptions.AlreadyEnqueued):  # one waits already: it runs
            task.defer()
    return run_due()


def run_due() -> int:
    """Runs every job that is due, those they defer included, until none is left; how many."""
    ran = 0

    async def count(call_next: Any, context: JobContext, worker: Any) -> Any:
        nonlocal ran
        ran += 1
        return await call_next()

    once = worker_app(periodic=False)
    while True:  # a job may defer others (a firing, its deliveries): a further pass runs them
        before = ran
        once.run_worker(
            wait=False,
            install_signal_handlers=False,
            listen_notify=False,
            worker_middleware=[count],
            **WORKER_OPTIONS,
        )
        if ran == before:
            return ran


def on_app_ready(ready: App) -> None:
    """Demo mode (SQLite): the jobs in this process's memory (PROCRASTINATE_ON_APP_READY)."""
    ready.connector = ready.job_manager.connector = InMemoryConnector()


def start_in_process() -> threading.Thread:
    """``make run``: a worker in a daemon thread of the serving process (its simulator too),
    after deferring again what the last run left."""

    def work() -> None:
        requeue_waiting()
        run_worker(install_signal_handlers=False)

    thread = threading.Thread(target=work, name="alerts-worker", daemon=True)
    thread.start()
    return thread


def requeue_waiting() -> None:
    """Defers again the pending deliveries and waiting top-ups (after a restart in demo mode,
    or an upgrade from the worker loop)."""
    pending = AlertDelivery.objects.filter(status=AlertDelivery.Status.PENDING)
    notify.defer(*pending.values_list("pk", flat=True))
    for pk in Topup.objects.filter(status__in=topups.WAITING).values_list("pk", flat=True):
        topups.defer_follow_up(pk)
