"""Deferring background jobs (procrastinate, dashboard/tasks.py) from services, by name."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from procrastinate import exceptions
from procrastinate.contrib.django import app


def defer(task: str, *, lock: str, wait: timedelta | None = None, **kwargs: Any) -> None:
    """Defers ``task`` unless a job of the same ``lock`` waits already. In PostgreSQL the job
    is written in the caller's transaction: it exists if and only if the rows it reads do. Kept
    in memory (demo mode) it waits for the commit, or a worker could run it before they show."""

    def go() -> None:
        schedule_in = {"seconds": round(wait.total_seconds())} if wait else None
        with contextlib.suppress(exceptions.AlreadyEnqueued):
            app.configure_task(task, queueing_lock=lock, schedule_in=schedule_in).defer(**kwargs)

    if settings.JOBS_IN_MEMORY:
        transaction.on_commit(go)
    else:
        go()
