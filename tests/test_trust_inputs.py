"""Trust: the audit log is written only for granted accounts, top-ups have a ceiling, and
signed-in answers are never kept by a cache."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from dashboard import roles
from dashboard.models import AuditEvent

from .conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, make_user

# ---------------------------------------------------------------- the forbidden-attempt audit

UNKNOWN_ACCOUNT_ID = "f" * 32


def lead_of(accounts: list[str]) -> Client:
    client = Client()
    client.force_login(make_user("lena", roles.TEAM_LEAD, accounts=accounts))
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("account_id", [UNKNOWN_ACCOUNT_ID, ACCOUNT_ID])
def test_it_writes_nothing_for_an_account_not_configured_or_not_granted(account_id, sim):
    client = lead_of([OTHER_ACCOUNT_ID])
    for name in ("topup_create", "topup_check", "auto_topup", "spending_limit", "alerts"):
        response = client.post(reverse(name, args=[account_id]), {"amount": "25"})
        assert response.status_code == 404, name
    assert not AuditEvent.objects.exists()
    assert not [call for call in sim.calls if not call.startswith("GET ")]


@pytest.mark.django_db
def test_it_audits_a_forbidden_write_to_a_granted_account():
    client = lead_of([ACCOUNT_ID])
    response = client.post(reverse("topup_create", args=[ACCOUNT_ID]), {"amount": "25"})
    assert response.status_code == 403
    (event,) = AuditEvent.objects.all()
    assert event.account_id == ACCOUNT_ID and event.outcome == AuditEvent.Outcome.FORBIDDEN
