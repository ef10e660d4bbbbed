"""The activity page: an account's audit events, filtered, paged, summarised and exported.
Before and after may carry text that came from Cloudflare, so the summaries are plain strings
for the template to escape, never markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from dashboard.models import AuditEvent
from dashboard.services.invoices import PageLink, page_links
from dashboard.services.money import format_usd
from dashboard.services.usage import PLAIN_NUMBER, csv_cell

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome

PER_PAGE = 50
#: An export larger than this is refused, never cut short: a truncated file would look
#: complete in a spreadsheet. Years of one account's changes fit many times over.
CSV_MAX_ROWS = 10_000

BADGES: dict[str, str] = {
    Outcome.ACCEPTED: "badge-ok",
    Outcome.INVALID: "badge-neutral",
    Outcome.FORBIDDEN: "badge-warning",
    Outcome.REFUSED: "badge-error",
    Outcome.FAILED: "badge-error",
    Outcome.UNKNOWN: "badge-warning",
}


@dataclass(frozen=True)
class Filters:
    """What the filter form asked for; ``None`` is "any". ``end`` is exclusive."""

    action: AuditEvent.Action | None = None
    outcome: AuditEvent.Outcome | None = None
    user: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    #: The dates as typed, for links that keep the filter.
    start_date: date | None = None
    end_date: date | None = None

    def query(self, page: int | None = None) -> str:
        """The query string that asks for these filters (and ``page``), "" when none."""
        params = {
            "action": self.action.value if self.action else None,
            "outcome": self.outcome.value if self.outcome else None,
            "user": self.user,
            "start": self.start_date.isoformat() if self.start_date else None,
            "end": self.end_date.isoformat() if self.end_date else None,
            "page": str(page) if page is not None and page > 1 else None,
        }
        given = {name: value for name, value in params.items() if value}
        return "?" + urlencode(given) if given else ""


def usernames(account_id: str) -> list[str]:
    found = AuditEvent.objects.filter(account_id=account_id).exclude(username="")
    names = found.values_list("username", flat=True)
    return sorted(set(names), key=str.casefold)


def events(account_id: str, filters: Filters) -> QuerySet[AuditEvent]:
    asked = {
        "action": filters.action,
        "outcome": filters.outcome,
        "username": filters.user,
        "at__gte": filters.start,
        "at__lt": filters.end,
    }
    found = AuditEvent.objects.filter(account_id=account_id)
    return found.filter(**{k: v for k, v in asked.items() if v}).order_by("-at", "-id")


class PageError(Exception):
    pass


def page_of(found: QuerySet[AuditEvent], number: int) -> Page[AuditEvent]:
    """Page ``number`` (from 1) of ``PER_PAGE`` events; PageError past the last page (page 1
    of nothing is an empty page, not an error)."""
    paginator = Paginator(found, PER_PAGE)
    if number > paginator.num_pages:
        raise PageError(
            f"There is no page {number}: these events fill {paginator.num_pages} "
            f"page{'s' if paginator.num_pages != 1 else ''}."
        )
    return paginator.page(number)


# ---------------------------------------------------------------- rows for the page


@dataclass(frozen=True)
class Change:
    """One field of before → after, as text; ``before`` is None for a value newly set."""

    label: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class Row:
    event: AuditEvent
    action: str
    outcome: str
    badge: str
    changes: tuple[Change, ...]
    upstream: str
    detail: str


def value_text(value: Any) -> str:
    """A recorded value as people read it: money strings as dollars, JSON otherwise."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        # Amounts are recorded as exact decimal strings ("25.00"), see ``audit._plain``: the
        # only Decimals recorded are money, while counts and codes stay JSON numbers.
        return format_usd(Decimal(value)) if PLAIN_NUMBER.fullmatch(value) else value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return ", ".join(value_text(item) for item in value) if value else "none"
    if isinstance(value, Mapping):
        return "; ".join(f"{_label(str(k))}: {value_text(v)}" for k, v in sorted(value.items()))
    return str(value)


# Details written before they were kept in words (rows are append-only, so they are read in
# words instead): "field: message; __all__: message", an exception's class name before its
# message, a missing permission's code name, a message list in Python's notation.
_FIELD_PART = re.compile(r"^([a-z][a-z0-9_]*|__all__): (.*)$", re.S)
_CLASS_PREFIX = re.compile(r"^[A-Z][A-Za-z]*(?:Error|Timeout|Exception): ")
_MESSAGE_LIST = re.compile(r"^\[(['\"])(.*)\1\]$", re.S)
FORBIDDEN_TEXT = "Their role does not allow this change."


def detail_text(detail: str) -> str:
    """An event's detail as a sentence, whichever way it was recorded."""
    if detail.startswith("missing permission "):
        return FORBIDDEN_TEXT
    detail = _CLASS_PREFIX.sub("", detail)
    parts = [part.strip() for part in detail.split("; ") if part.strip()]
    fields = [found for part in parts if (found := _FIELD_PART.match(part))]
    if not parts or len(fields) < len(parts):
        # Not a form's errors: Cloudflare's own words, kept as they were (semicolons too).
        return detail
    return " ".join(_detail_part(found) for found in fields)


def _detail_part(found: re.Match[str]) -> str:
    name, message = found.groups()
    listed = _MESSAGE_LIST.match(message)
    if listed is not None:
        message = listed.group(2)
    return message if name == "__all__" else f"{_label(name)}: {message}"


#: Recorded keys whose plain reading would still be machinery; the top-ups page says the same.
_LABELS = {"payment_intent_id": "Payment reference"}


def _label(key: str) -> str:
    text = _LABELS.get(key) or key.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "Value"


def changes(before: Any, after: Any) -> tuple[Change, ...]:
    """What changed, key by key for two objects (unchanged keys left out), else one "Value"."""
    if before is None and after is None:
        return ()
    if isinstance(before, Mapping | None) and isinstance(after, Mapping | None):
        old: Mapping[str, Any] = before or {}
        new: Mapping[str, Any] = after or {}
        # The keys of before, then those new in after.
        return tuple(
            Change(
                _label(str(key)),
                value_text(old[key]) if key in old else None,
                value_text(new[key]) if key in new else "removed",
            )
            for key in {**old, **new}
            if not (key in old and key in new and old[key] == new[key])
        )
    return (Change("Value", None if before is None else value_text(before), value_text(after)),)


def upstream_text(event: AuditEvent) -> str:
    """What Cloudflare answered, e.g. "HTTP 403 · codes 10000 · request abc123"."""
    codes = [str(code) for code in event.upstream_codes or []]
    parts = [
        "" if event.upstream_status is None else f"HTTP {event.upstream_status}",
        f"code{'s' if len(codes) > 1 else ''} {', '.join(codes)}" if codes else "",
        f"request {event.request_id}" if event.request_id else "",
    ]
    return " · ".join(part for part in parts if part)


def rows(found: Iterable[AuditEvent]) -> list[Row]:
    return [
        Row(
            event=event,
            action=event.get_action_display(),
            outcome=event.get_outcome_display(),
            badge=BADGES.get(event.outcome, "badge-neutral"),
            changes=changes(event.before, event.after),
            upstream=upstream_text(event),
            detail=detail_text(event.detail),
        )
        for event in found
    ]


def links(page: Page[AuditEvent], filters: Filters) -> list[PageLink | None]:
    """Numbered page links that keep the filters; None is a gap."""
    return [
        None if number is None else PageLink(number, filters.query(number))
        for number in page_links(page.number, page.paginator.num_pages)
    ]


# ---------------------------------------------------------------- CSV


def _json_cell(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def csv_rows(found: QuerySet[AuditEvent], zone: tzinfo) -> Iterator[list[str]]:
    """The header, then every event of ``found`` (newest first), read in chunks, each cell made
    inert for spreadsheets."""
    columns: dict[str, Callable[[AuditEvent], str]] = {
        "time_utc": lambda e: e.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"time_local ({zone})": lambda e: e.at.astimezone(zone).isoformat(timespec="seconds"),
        "user": lambda e: e.username,
        "account": lambda e: e.account_id,
        "action": lambda e: e.action,
        "outcome": lambda e: e.outcome,
        "before": lambda e: _json_cell(e.before),
        "after": lambda e: _json_cell(e.after),
        "upstream_status": lambda e: "" if e.upstream_status is None else str(e.upstream_status),
        "upstream_codes": lambda e: " ".join(str(code) for code in e.upstream_codes or []),
        "request_id": lambda e: e.request_id,
        "idempotency_key": lambda e: e.idempotency_key,
        "detail": lambda e: detail_text(e.detail),
    }
    yield list(columns)
    for event in found.iterator(chunk_size=500):
        yield [csv_cell(cell(event)) for cell in columns.values()]


def csv_filename(account_id: str, today: date) -> str:
    return f"activity-{account_id}-{today.isoformat()}.csv"
