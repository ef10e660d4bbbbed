"""The audit log: every attempted change (confirmed, sent to Cloudflare, or refused for want of
a permission), recorded once, whatever its outcome, with details in words. A form sent back
for a typo is no attempt.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AnonymousUser, User

from billing_api.errors import BillingError, BillingStatusError
from dashboard.models import AuditEvent

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome


def _plain(value: Any) -> Any:
    """JSON-safe: money as exact strings ("25.00"), never floats."""
    return json.loads(json.dumps(value, default=_default)) if value is not None else None


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON-safe: {type(value).__name__}")


def outcome_of(error: BillingError) -> AuditEvent.Outcome:
    """How an upstream error is recorded: refused (4xx from Cloudflare) or failed."""
    status = error.status_code if isinstance(error, BillingStatusError) else None
    if status is not None and 400 <= status < 500 and status != 429:
        return Outcome.REFUSED
    return Outcome.FAILED


def record(
    user: User | AnonymousUser,
    account_id: str,
    action: AuditEvent.Action,
    outcome: AuditEvent.Outcome,
    *,
    before: Any = None,
    after: Any = None,
    detail: str = "",
    error: BillingError | None = None,
    idempotency_key: str = "",
    actor: str = "",
) -> AuditEvent:
    """Append one event. ``error``: what Cloudflare answered, kept for follow-up."""
    answer = error if isinstance(error, BillingStatusError) else None
    if error is not None and not detail:
        # Words for the Activity page; status, codes and request id are kept apart below.
        detail = error.user_message
    return AuditEvent.objects.create(
        user=user if isinstance(user, User) else None,
        # ``actor``: who acted when no one was logged in (the alerts worker).
        username=actor or (user.get_username() if user.is_authenticated else ""),
        account_id=account_id,
        action=action,
        outcome=outcome,
        before=_plain(before),
        after=_plain(after),
        detail=detail,
        upstream_status=answer.status_code if answer else None,
        upstream_codes=list(answer.codes) if answer else [],
        request_id=(answer.request_id or "") if answer else "",
        idempotency_key=idempotency_key,
    )
