"""The audit log: append-only, with what Cloudflare said; read-only in the admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from billing_api import errors
from dashboard.models import AppendOnlyError, AuditEvent
from dashboard.services import audit
from tests.conftest import ACCOUNT_ID, run_on_fresh_sqlite

pytestmark = pytest.mark.django_db


def test_it_records_who_what_before_after_and_outcome(finance):
    event = audit.record(
        finance,
        ACCOUNT_ID,
        audit.Action.TOPUP,
        audit.Outcome.ACCEPTED,
        before={"balance": Decimal("12.50")},
        after={"amount": Decimal("25.00")},
        idempotency_key="k-1",
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.username == "frank" and stored.user == finance
    assert stored.before == {"balance": "12.50"}
    assert stored.after == {"amount": "25.00"}
    assert stored.idempotency_key == "k-1"


def test_it_keeps_what_cloudflare_answered(admin):
    error = errors.PermissionDeniedError(
        "POST spending-limit answered HTTP 403",
        status_code=403,
        errors=(errors.CloudflareErrorDetail(1000, "deprecated"),),
        request_id="8f00-LHR",
    )
    event = audit.record(
        admin,
        ACCOUNT_ID,
        audit.Action.SPENDING_LIMIT_SET,
        audit.outcome_of(error),
        error=error,
    )
    assert event.outcome == audit.Outcome.REFUSED
    assert (event.upstream_status, event.upstream_codes, event.request_id) == (
        403,
        [1000],
        "8f00-LHR",
    )
    assert event.detail == error.user_message  # words; the status and codes are kept apart


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (errors.UpstreamError("x", status_code=502), "failed"),
        (errors.RateLimitedError("x"), "failed"),
        (errors.BillingTimeout("x"), "failed"),
        (errors.ValidationError("x", status_code=400), "refused"),
    ],
)
def test_it_tells_a_refusal_from_a_failure(error, outcome):
    assert audit.outcome_of(error) == outcome


def test_it_never_changes_or_deletes_an_event(finance):
    event = audit.record(finance, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.INVALID)
    event.detail = "rewritten"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).detail == ""


def test_it_is_read_only_in_the_admin(client, admin):
    audit.record(admin, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.ACCEPTED)
    event = AuditEvent.objects.get()
    client.force_login(admin)  # a billing admin, not a superuser
    assert client.get("/admin/dashboard/auditevent/").status_code == 200
    page = client.get(f"/admin/dashboard/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.text
    assert client.post(f"/admin/dashboard/auditevent/{event.pk}/delete/").status_code == 403
    assert AuditEvent.objects.count() == 1


# ---------------------------------------------------------------- append-only in the database

# Statements that would rewrite history, as anyone with a database connection could run them.
REWRITES = [
    "UPDATE dashboard_auditevent SET detail = 'rewritten'",
    "UPDATE dashboard_auditevent SET outcome = 'accepted', user_id = NULL",
    "UPDATE dashboard_auditevent SET at = at - interval '1 day'",
    "DELETE FROM dashboard_auditevent",
]


def run_sql(statement: str, params: list[int] | None = None) -> None:
    """Raw SQL in a savepoint of its own, so that the test can go on after a refusal."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.mark.parametrize("statement", REWRITES)
def test_it_refuses_raw_sql_that_changes_or_deletes_an_event(finance, statement):
    event = audit.record(finance, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.INVALID)
    with pytest.raises(DatabaseError, match="append-only"):
        run_sql(statement)
    stored = AuditEvent.objects.get()
    assert (stored.pk, stored.detail, stored.outcome, stored.user) == (
        event.pk,
        "",
        "invalid",
        finance,
    )
    assert stored.at == event.at


def test_it_refuses_to_give_an_event_to_another_user(finance, admin):
    audit.record(finance, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.ACCEPTED)
    with pytest.raises(DatabaseError, match="append-only"):
        run_sql("UPDATE dashboard_auditevent SET user_id = %s", [admin.pk])
    assert AuditEvent.objects.get().user == finance


def test_it_refuses_bulk_changes_that_skip_the_models_own_checks(finance):
    audit.record(finance, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.ACCEPTED)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.update(outcome=audit.Outcome.FAILED)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().outcome == "accepted"


def test_it_keeps_a_deleted_users_events_under_their_name(finance):
    event = audit.record(finance, ACCOUNT_ID, audit.Action.TOPUP, audit.Outcome.ACCEPTED)
    finance.delete()
    stored = AuditEvent.objects.get()
    assert (stored.pk, stored.user, stored.username, stored.outcome) == (
        event.pk,
        None,
        "frank",
        "accepted",
    )


# Run in a process of its own on a fresh SQLite file (demo mode's database), with every
# migration applied as `make run` applies them.
SQLITE_SCRIPT = """
import django
django.setup()
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from dashboard.services import audit
from dashboard.models import AuditEvent

call_command("migrate", verbosity=0)
user = User.objects.create_user("frank")
audit.record(user, 32 * "0", audit.Action.TOPUP, audit.Outcome.ACCEPTED)
for statement in (
    "UPDATE dashboard_auditevent SET detail = 'rewritten'",
    "UPDATE dashboard_auditevent SET user_id = NULL, outcome = 'failed'",
    "DELETE FROM dashboard_auditevent",
):
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    except DatabaseError as err:
        print("refused:", err)
    else:
        print("done:", statement)
user.delete()
event = AuditEvent.objects.get()
print("kept:", event.username, event.user_id, event.outcome, repr(event.detail))
"""


def test_it_refuses_the_same_on_sqlite(tmp_path):
    result = run_on_fresh_sqlite(SQLITE_SCRIPT, tmp_path / "demo.sqlite3", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["refused"] * 3 + ["kept"]
    assert all("append-only" in line for line in lines[:3])
    assert lines[3] == "kept: frank None accepted ''"
