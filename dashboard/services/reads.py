"""The upstream reads, one function per endpoint, so every page shares one cache key each.

Each returns an ``upstream.Fetched`` and never raises a BillingError. Callers that read a
time range should align it (to the hour, say) so that viewers share the cached answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from django.core.cache import cache

from billing_api import errors, models
from billing_api.client import BillingClient
from dashboard.infra import upstream
from dashboard.services import figures, runway


def forget(account_id: str, name: str, params: dict[str, object] | None = None) -> None:
    """The next read of ``name`` goes to Cloudflare (after a change, or to check afresh)."""
    key = upstream.cache_key(account_id, name, params)
    cache.delete_many([key, key + ":failed"])


def error_and_time(parts: Iterable[Any]) -> tuple[str | None, datetime | None]:
    """The first error of reads (or cards), and the oldest time: none is newer than that."""
    parts = list(parts)
    times = [part.as_of for part in parts if part.as_of is not None]
    return next((part.error for part in parts if part.error), None), min(times, default=None)


def credit_balance(account_id: str) -> upstream.Fetched[models.CreditBalance]:
    return upstream.read(account_id, "credit-balance", lambda client: client.credit_balance())


#: Cloudflare's "could not route" codes.
ROUTING_CODES = frozenset({7000, 7003})


@dataclass(frozen=True)
class Upcoming:
    """What ``invoice-preview`` said: an invoice, or (a 404) that there is none."""

    preview: models.InvoicePreview | None


def load_upcoming(client: BillingClient) -> Upcoming:
    try:
        return Upcoming(client.invoice_preview())
    except errors.NotFoundError as err:
        # Undocumented upstream: a 404 is read as "no upcoming invoice", unless Cloudflare
        # says the account or path itself is unknown.
        if ROUTING_CODES.intersection(err.codes):
            raise
        return Upcoming(None)


def invoice_preview(account_id: str) -> upstream.Fetched[Upcoming]:
    """The upcoming invoice, shared by the overview and the invoices page."""
    return upstream.read(account_id, "invoice-preview", load_upcoming)


def spending_limit(account_id: str) -> upstream.Fetched[models.SpendingLimit]:
    return upstream.read(account_id, "spending-limit", lambda client: client.spending_limit())


def topup_limits(account_id: str) -> upstream.Fetched[models.TopupLimits]:
    return upstream.read(account_id, "topup-limits", lambda client: client.topup_limits())


def usage_history(
    account_id: str, window: models.UsageWindow, start: datetime, end: datetime
) -> upstream.Fetched[models.UsageHistory]:
    """One upstream call for ``[start, end)``; splitting long ranges is the caller's job."""
    return upstream.read(
        account_id,
        "usage-history",
        lambda client: client.usage_history(window, start, end),
        params={"window": window, "start": start.isoformat(), "end": end.isoformat()},
    )


def recent_usage(account_id: str, now: datetime, tz: tzinfo) -> upstream.Fetched[figures.Usage]:
    """The hourly usage the overview, alerts, digest and rule previews share
    (``runway.usage_range``), with its figures computed once per cache period."""
    span = runway.usage_range(now, tz)
    return upstream.read(
        account_id,
        "usage-history",
        lambda client: figures.Usage.of(
            client.usage_history("hour", span.start, span.end), span, tz
        ),
        params={"start": span.start.isoformat(), "end": span.end.isoformat(), "zone": str(tz)},
    )


def invoice_history(
    account_id: str, type: models.InvoiceType = "all", page: int = 1
) -> upstream.Fetched[models.InvoiceHistory]:
    return upstream.read(
        account_id,
        "invoice-history",
        lambda client: client.invoice_history(type, page),
        params={"type": type, "page": page},
    )
