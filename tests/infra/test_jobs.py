"""Deferring a background job from a service (dashboard/infra/jobs.py)."""

from __future__ import annotations

import pytest
from django.db import transaction
from procrastinate.testing import InMemoryConnector

from dashboard.infra import jobs as background

pytestmark = pytest.mark.django_db


def waiting(connector: InMemoryConnector) -> list[str]:
    return [job["task_name"] for job in connector.jobs.values() if job["status"] == "todo"]


def defer_delivery() -> None:
    background.defer("deliver_alert", lock="delivery-1", delivery_id=1)


def test_a_job_is_deferred_once_per_lock(jobs):
    defer_delivery()
    defer_delivery()
    assert waiting(jobs) == ["deliver_alert"]


def test_kept_in_memory_a_job_waits_for_its_rows_to_be_committed(
    jobs, settings, django_capture_on_commit_callbacks
):
    # Demo mode: a worker thread of the same process could otherwise run it before the rows
    # it reads are visible (a delivery left pending for ever).
    settings.JOBS_IN_MEMORY = True
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        defer_delivery()
        assert waiting(jobs) == []
    assert waiting(jobs) == ["deliver_alert"]


def test_in_postgresql_a_job_is_written_in_the_callers_transaction(jobs, settings):
    # Both or neither: the job and the rows it reads commit together.
    settings.JOBS_IN_MEMORY = False
    with transaction.atomic():
        defer_delivery()
        assert waiting(jobs) == ["deliver_alert"]
