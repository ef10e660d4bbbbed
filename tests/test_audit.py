"""The audit log: append-only, with what Cloudflare said; read-only in the admin."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_api import errors
from dashboard import audit
from dashboard.models import AppendOnlyError, AuditEvent
from tests.conftest import ACCOUNT_ID

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
    assert "PermissionDeniedError" in event.detail


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
