"""Each figure shown under a shared name, defined once, with the span it covers, so that every
page, email and CSV shows one number for "last 24 hours" at the same moment.

Figures stop at the end of the last complete hour (``data_end``), so none changes within the
hour. Burn per day: over the last 7 (or 30) complete local days. Last 24 hours: the 24 whole
hours to ``data_end``. Month to date: from the 1st, local midnight. Month-end forecast: month
to date plus the 7-day burn until the month's end. Runway: zero at the 7-day burn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Final

from billing_api.models import UsageHistory
from dashboard.services import runway

DAY: Final = timedelta(days=1)


@dataclass(frozen=True)
class Span:
    """``[start, end)`` in UTC; ``complete_days``: whole local days of ``zone``."""

    start: datetime
    end: datetime
    complete_days: bool
    zone: tzinfo

    @property
    def first_day(self) -> date:
        return self.start.astimezone(self.zone).date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).astimezone(self.zone).date()


@dataclass(frozen=True)
class Figure:
    """A value in dollars over its span; ``per_day``: an average per day, not a total."""

    key: str
    value: Decimal
    span: Span
    per_day: bool = False

    @property
    def label(self) -> str:
        return ("per day over " if self.per_day else "over ") + span_label(self.span)


def data_end(now: datetime) -> datetime:
    """Where every figure stops: the end of the last complete hour."""
    return runway.floor_hour(now)


def days_span(first: date, last: date, zone: tzinfo) -> Span:
    """Whole local days ``first`` to ``last``, both included."""
    start = runway.local_midnight(first, zone)
    return Span(start, runway.local_midnight(last + DAY, zone), True, zone)


def last_complete_days(count: int, now: datetime, zone: tzinfo) -> Span:
    """The ``count`` local days before today."""
    today = now.astimezone(zone).date()
    return days_span(today - count * DAY, today - DAY, zone)


def burn_of(rate: runway.BurnRate | None, zone: tzinfo) -> Figure | None:
    if rate is None:
        return None
    span = days_span(rate.first, rate.last, zone)
    return Figure(f"burn-{rate.asked}d", rate.per_day, span, per_day=True)


def last_24h(hours: runway.Hours, now: datetime, zone: tzinfo) -> Figure:
    end = data_end(now)
    span = Span(end - DAY, end, False, zone)
    return Figure("last-24h", hours.between(span.start, end), span)


def month_to_date(month: runway.MonthToDate, zone: tzinfo) -> Figure:
    return Figure("mtd", month.total, Span(month.since, month.until, False, zone))


def month_end_forecast(month: runway.MonthToDate, zone: tzinfo) -> Figure | None:
    """What the month comes to at the 7-day burn; its span is the whole month."""
    if month.projected is None:
        return None
    local = month.since.astimezone(zone).date()
    next_month = (local.replace(day=28) + timedelta(days=4)).replace(day=1)
    span = days_span(local, next_month - DAY, zone)
    return Figure("forecast", month.projected, span)


@dataclass(frozen=True)
class Usage:
    """The hourly usage of :func:`runway.usage_range` with its days and burn rates, made once per
    read and cached with it (``reads.recent_usage``): a page sums spans of kept running totals
    rather than regrouping hundreds of models."""

    hours: runway.Hours
    start: datetime
    end: datetime
    days: tuple[runway.DayTotal, ...]
    week: runway.BurnRate | None
    month: runway.BurnRate | None
    zone: tzinfo

    @classmethod
    def of(cls, history: UsageHistory, span: runway.UsageRange, tz: tzinfo) -> Usage:
        buckets = history.history
        days = tuple(runway.daily_totals(buckets, tz, span.start, span.end))
        return cls(
            runway.Hours.of(buckets),
            runway.history_start(buckets, span.start),
            span.end,
            days,
            runway.burn_rate(days, runway.SHORT_DAYS),
            runway.burn_rate(days, runway.LONG_DAYS),
            tz,
        )

    @property
    def burn_week(self) -> Figure | None:
        return burn_of(self.week, self.zone)

    @property
    def burn_month(self) -> Figure | None:
        return burn_of(self.month, self.zone)

    @property
    def week_short(self) -> bool:
        """Fewer than 7 complete days of history."""
        return self.week is None or self.week.short


def _day(day: date, *, year: bool = False) -> str:
    return f"{day.day} {day:%b} {day.year}" if year else f"{day.day} {day:%b}"


def days_label(first: date, last: date) -> str:
    """ "6 Dec", "1–6 Dec", "30 Nov–6 Dec", "28 Dec 2026–3 Jan 2027"."""
    if first == last:
        return _day(first)
    if first.year != last.year:
        return f"{_day(first, year=True)}–{_day(last, year=True)}"
    if first.month == last.month:
        return f"{first.day}–{_day(last)}"
    return f"{_day(first)}–{_day(last)}"


def span_label(span: Span) -> str:
    """ "30 Nov–6 Dec, complete days, UTC" or "6 Dec 20:00–7 Dec 20:00, UTC"."""
    if span.complete_days:
        return f"{days_label(span.first_day, span.last_day)}, complete days, {span.zone}"
    start, end = span.start.astimezone(span.zone), span.end.astimezone(span.zone)
    return f"{_day(start.date())} {start:%H:%M}–{_day(end.date())} {end:%H:%M}, {span.zone}"
