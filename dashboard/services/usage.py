"""The usage report: spend per day or per hour over a range, in the reporting time zone.

Cloudflare's ``day`` buckets are UTC days, so for another zone local days are added up from
``hour`` buckets (or, where a local midnight is no whole UTC hour, UTC days are shown and
named). Hours are read in parallel chunks of at most 31 days; if one fails, the report has no
rows at all, never a chart of the part that answered.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from functools import partial
from typing import Any, Final, Literal
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse

from billing_api import models
from dashboard.infra import upstream
from dashboard.services import figures, reads, runway
from dashboard.services.money import CENT
from dashboard.services.runway import ZERO, ceil_hour, floor_hour

# The time helpers of every figure, named here too for the usage form.
HOUR: Final = runway.HOUR
DAY: Final = figures.DAY
MAX_HOURLY_SPAN: Final = runway.MAX_HOURLY_SPAN
local_midnight = runway.local_midnight
UsageWindow = models.UsageWindow
Preset = Literal["24h", "7d", "30d", "90d", "mtd", "last-month", "custom"]

#: The range presets, in the order the page offers them, with their labels.
PRESETS: Final[dict[str, str]] = {
    "24h": "24 h",
    "7d": "7 days",
    "30d": "30 days",
    "90d": "90 days",
    "mtd": "Month to date",
    "last-month": "Last month",
}
DEFAULT_PRESET: Final[Preset] = "7d"
WINDOWS: Final[dict[str, str]] = {"day": "Day", "hour": "Hour"}
#: The longest range a report covers, presets and custom ranges alike.
MAX_RANGE_DAYS: Final = 93
#: Dates before this are refused: nothing to show, and far-off dates overflow in some zones.
EARLIEST_DATE: Final = date(2000, 1, 1)


class RangeError(ValueError):
    """A range the report cannot show; the message is for the person who asked."""


def floor_utc_day(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


def ceil_utc_day(moment: datetime) -> datetime:
    floor = floor_utc_day(moment)
    return floor if floor == moment else floor + DAY


def local_date(moment: datetime, zone: tzinfo) -> date:
    return moment.astimezone(zone).date()


@dataclass(frozen=True)
class ReportRange:
    """What was asked for: ``[start, end)`` as aware UTC datetimes, ``end`` never past now."""

    preset: Preset
    start: datetime
    end: datetime
    #: The range runs up to now (a preset ending now, or a custom end date today or later).
    to_now: bool = False


def default_window(preset: Preset) -> UsageWindow:
    return "hour" if preset == "24h" else "day"


def resolve_range(
    preset: Preset,
    *,
    now: datetime,
    zone: tzinfo,
    start: datetime | None = None,
    end: datetime | None = None,
) -> ReportRange:
    """The range of a preset, or of a custom ``start``/``end`` (local midnights, end exclusive;
    RangeError if it cannot be shown). Presets are the overview's figures (:mod:`figures`), and
    a range that reaches now ends, as every figure does, with the last complete hour."""
    until = figures.data_end(now)
    today = local_date(now, zone)
    if preset == "24h":
        return ReportRange(preset, until - 24 * HOUR, until, to_now=True)
    if preset in ("7d", "30d", "90d"):
        complete = figures.last_complete_days(int(preset[:-1]), now, zone)
        return ReportRange(preset, complete.start, complete.end)
    if preset == "mtd":
        return ReportRange(preset, local_midnight(today.replace(day=1), zone), until, to_now=True)
    if preset == "last-month":
        first_this = today.replace(day=1)
        first_last = (first_this - DAY).replace(day=1)
        return ReportRange(
            preset, local_midnight(first_last, zone), local_midnight(first_this, zone)
        )
    if start is None or end is None:
        raise RangeError("A custom range needs both a start date and an end date.")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start >= now:
        raise RangeError("The range starts in the future. Choose a start date up to today.")
    if end <= start:
        raise RangeError("The end date is before the start date.")
    days = (local_date(end, zone) - local_date(start, zone)).days
    if days > MAX_RANGE_DAYS:
        raise RangeError(
            f"A custom range may span at most {MAX_RANGE_DAYS} days; this one spans {days}."
        )
    if end > until:
        return ReportRange(preset, start, until, to_now=True)
    return ReportRange(preset, start, end)


@dataclass(frozen=True)
class Plan:
    """How a report is read: the buckets it shows and the calls that fetch them."""

    window: UsageWindow
    #: The window asked of Cloudflare: ``hour`` also when local days are added up from hours.
    source: UsageWindow
    #: The span the buckets cover (the range widened to whole buckets), aware UTC.
    start: datetime
    end: datetime
    #: Day buckets are local days added up from Cloudflare's hours.
    local_days: bool
    #: Day buckets are Cloudflare's UTC days although the reporting zone is not UTC.
    utc_days: bool
    chunks: tuple[tuple[datetime, datetime], ...]


def split_span(
    start: datetime, end: datetime, longest: timedelta
) -> list[tuple[datetime, datetime]]:
    chunks = []
    cursor = start
    while cursor < end:
        following = min(cursor + longest, end)
        chunks.append((cursor, following))
        cursor = following
    return chunks


def plan(window: UsageWindow, rng: ReportRange, *, zone: tzinfo, now: datetime) -> Plan:
    """Widen ``rng`` to whole buckets and choose the upstream calls (see the module docstring)."""
    fetch_until = figures.data_end(now)
    if window == "hour":
        start, end = floor_hour(rng.start), ceil_hour(rng.end)
        chunks = split_span(start, min(end, fetch_until), MAX_HOURLY_SPAN)
        return Plan("hour", "hour", start, end, False, False, tuple(chunks))
    first = local_date(rng.start, zone)
    last = local_date(rng.end - timedelta(microseconds=1), zone)
    days = (first + n * DAY for n in range((last - first).days + 2))
    offsets = {local_midnight(d, zone).astimezone(zone).utcoffset() or timedelta(0) for d in days}
    whole_hours = all(o % HOUR == timedelta(0) for o in offsets)
    partial_day = rng.end != local_midnight(last + DAY, zone)
    if (offsets == {timedelta(0)} and not partial_day) or not whole_hours:
        # Local days are UTC days (London in winter), or cannot be built from hours: one call
        # for Cloudflare's day buckets, aligned to midnight UTC.
        start, end = floor_utc_day(rng.start), ceil_utc_day(rng.end)
        utc_days = offsets != {timedelta(0)}
        return Plan("day", "day", start, end, False, utc_days, ((start, end),))
    start, end = local_midnight(first, zone), local_midnight(last + DAY, zone)
    chunks = split_span(start, min(end, fetch_until), MAX_HOURLY_SPAN)
    return Plan("day", "hour", start, end, True, False, tuple(chunks))


@dataclass(frozen=True)
class Row:
    """One bucket as the page shows it: ``[start, end)`` in UTC, spend in dollars."""

    start: datetime
    end: datetime
    spend: Decimal
    #: The bucket has not ended yet: its figure is "so far".
    in_progress: bool = False


def rows_from_buckets(
    buckets: Iterable[models.UsageBucket], the_plan: Plan, *, zone: tzinfo, now: datetime
) -> list[Row]:
    """Cloudflare's buckets as rows of the plan's window, oldest first, inside its span; a
    bucket seen twice (chunks meet exactly) is counted once."""
    unique: dict[datetime, models.UsageBucket] = {}
    for bucket in buckets:
        start = bucket.start_time.astimezone(UTC)
        if the_plan.start <= start < the_plan.end:
            unique.setdefault(start, bucket)
    ordered = sorted(unique.items())
    if not the_plan.local_days:
        return [
            Row(start, b.end_time.astimezone(UTC), b.aggregated_value, b.end_time > now)
            for start, b in ordered
        ]
    days: defaultdict[date, Decimal] = defaultdict(Decimal)
    for start, bucket in ordered:
        days[local_date(start, zone)] += bucket.aggregated_value
    rows = []
    for day, spend in days.items():
        end = local_midnight(day + DAY, zone)
        rows.append(Row(local_midnight(day, zone), end, spend, in_progress=end > now))
    return rows


@dataclass(frozen=True)
class Summary:
    total: Decimal
    #: Over the buckets that are over (a day still running would pull it down); None if none.
    average: Decimal | None
    complete_buckets: int
    #: The bucket with the most spend (the earliest of equals); None when nothing was spent.
    busiest: Row | None


def summarize(rows: Sequence[Row]) -> Summary:
    total = sum((row.spend for row in rows), ZERO)
    complete = [row for row in rows if not row.in_progress]
    average = sum((r.spend for r in complete), ZERO) / len(complete) if complete else None
    # max() keeps the earliest of equals.
    busiest = max((row for row in rows if row.spend > 0), key=lambda r: r.spend, default=None)
    return Summary(total, average, len(complete), busiest)


@dataclass(frozen=True)
class UsageReport:
    """A report, complete or not. Incomplete: ``error`` set, no rows, no summary."""

    window: UsageWindow
    range: ReportRange
    plan: Plan
    zone: tzinfo
    rows: tuple[Row, ...] = ()
    summary: Summary | None = None
    #: Why the figures are missing or old, in plain words.
    error: str | None = None
    #: When the oldest figure shown was read from Cloudflare.
    as_of: datetime | None = None
    #: Some figures are the last good ones, Cloudflare failing now.
    stale: bool = False
    #: Cloudflare had not answered by the page's deadline.
    pending: bool = False

    @property
    def complete(self) -> bool:
        return self.summary is not None

    @property
    def running(self) -> bool:
        """The last bucket has not ended yet."""
        return any(row.in_progress for row in self.rows)

    @property
    def empty(self) -> bool:
        return self.complete and not any(row.spend for row in self.rows)

    @property
    def label_zone(self) -> tzinfo:
        """The zone the bucket labels are in: UTC when the days are Cloudflare's UTC days."""
        return UTC if self.plan.utc_days else self.zone

    @property
    def unit(self) -> str:
        return self.window


def usage_report(
    account_id: str,
    window: UsageWindow,
    rng: ReportRange,
    *,
    zone: tzinfo,
    now: datetime,
) -> UsageReport:
    the_plan = plan(window, rng, zone=zone, now=now)
    loaders = {
        str(index): partial(reads.usage_history, account_id, the_plan.source, start, end)
        for index, (start, end) in enumerate(the_plan.chunks)
    }
    fetched = upstream.gather(loaders, deadline=settings.BILLING_PAGE_DEADLINE)
    report = UsageReport(window=window, range=rng, plan=the_plan, zone=zone)
    results = [fetched[key] for key in loaders]
    if any(result.pending for result in results):
        return replace(report, pending=True, error="Cloudflare has not answered yet.")
    failed = next((r for r in results if r.value is None), None)
    if failed is not None:
        return replace(report, error=failed.error or "Cloudflare did not answer.")
    buckets = [bucket for result in results if result.value for bucket in result.value.history]
    rows = rows_from_buckets(buckets, the_plan, zone=zone, now=now)
    error, as_of = reads.error_and_time(results)
    return replace(
        report,
        rows=tuple(rows),
        summary=summarize(rows),
        error=error,
        stale=error is not None,
        as_of=as_of,
    )


#: The presets whose figure has a name of its own on other pages (see ``figures``).
_NAMED_TOTALS: Final = {"24h": "last-24h", "mtd": "mtd"}


def report_span(report: UsageReport) -> figures.Span:
    """The span the figures cover: whole local days when both ends are local midnights."""
    zone = report.label_zone
    shown = report.plan if report.plan.utc_days else report.range

    def midnight(moment: datetime) -> bool:
        return moment == local_midnight(local_date(moment, zone), zone)

    return figures.Span(shown.start, shown.end, midnight(shown.start) and midnight(shown.end), zone)


def summary_figures(report: UsageReport) -> dict[str, figures.Figure]:
    """The summary's total and (for whole days) average per day, named as other pages name
    them ("7 days" is the overview's ``burn-7d``, "24 h" its ``last-24h``), else "total" and
    "average"."""
    summary = report.summary
    if summary is None:
        return {}
    span = report_span(report)
    key = _NAMED_TOTALS.get(report.range.preset, "total")
    shown = {"total": figures.Figure(key, summary.total, span)}
    if report.window == "day" and span.complete_days and summary.average is not None:
        days = summary.complete_buckets
        key = f"burn-{days}d" if report.range.preset in ("7d", "30d", "90d") else "average"
        shown["average"] = figures.Figure(key, summary.average, span, per_day=True)
    return shown


def row_label(row: Row, report: UsageReport, *, short: bool = False) -> str:
    """The bucket as the table names it, "Tue 9 Jun 2026, 14:00", or the chart's axis
    (``short``), "9 Jun 14:00"; an hour that happens twice (DST ends) gets its zone's name."""
    local = row.start.astimezone(report.label_zone)
    text = f"{local.day} {local:%b}" if short else f"{local:%a} {local.day} {local:%b %Y}"
    if report.window == "hour":
        text += f"{' ' if short else ', '}{local:%H:%M}"
        # The hour repeated when DST ends has two offsets.
        if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            text += f" {local:%Z}"
    return text


def range_label(report: UsageReport) -> str:
    """ "3 Jun 2026 to 9 Jun 2026" or "9 Jun 2026, 13:00 to 10 Jun 2026, 13:00"."""
    zone = report.label_zone
    start = report.plan.start.astimezone(zone)
    if report.window == "hour":
        end = min(report.plan.end, report.range.end).astimezone(zone)
        return f"{_date_text(start)}, {start:%H:%M} to {_date_text(end)}, {end:%H:%M}"
    last = (report.plan.end - timedelta(microseconds=1)).astimezone(zone)
    if start.date() == last.date():
        return _date_text(start)
    return f"{_date_text(start)} to {_date_text(last)}"


def _date_text(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y}"


def chart_data(report: UsageReport) -> dict[str, Any]:
    """What usage.js draws (``json_script``)."""
    return {
        "unit": report.unit,
        "labels": [row_label(row, report, short=True) for row in report.rows],
        "titles": [row_label(row, report) for row in report.rows],
        "values": [float(row.spend) for row in report.rows],
        "inProgress": [row.in_progress for row in report.rows],
    }


PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading formula character gets a quote, but a
    plain number (a negative spend) is left as it is, so it stays a number."""
    if value.startswith(_FORMULA_START) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def money_text(amount: Decimal) -> str:
    """Dollars as in the data: at least two decimals, more only where the data has them."""
    text = format(amount.normalize(), "f")
    return text if len(text.partition(".")[2]) >= 2 else format(amount.quantize(CENT), "f")


def csv_rows(report: UsageReport) -> list[list[str]]:
    zone = report.label_zone
    header = [f"bucket_start ({zone})", "bucket_start_utc", "spend_usd"]
    rows = [
        [
            row.start.astimezone(zone).isoformat(),
            row.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            money_text(row.spend),
        ]
        for row in report.rows
    ]
    return [[csv_cell(cell) for cell in row] for row in [header, *rows]]


def csv_filename(account_id: str, report: UsageReport) -> str:
    """``usage-<account>-<first day>-<last day>-<window>.csv``, days in the labels' zone."""
    zone = report.label_zone
    end = min(report.plan.end, report.range.end) if report.window == "hour" else report.plan.end
    first = report.plan.start.astimezone(zone).date()
    last = (end - timedelta(microseconds=1)).astimezone(zone).date()
    return f"usage-{account_id}-{first.isoformat()}-{last.isoformat()}-{report.window}.csv"


def query(window: str | None, preset: str, start: date | None, end: date | None) -> str:
    """The usage page's query string for a window and a range (a custom one with its dates)."""
    params = {"range": preset}
    if window:
        params["window"] = window
    if preset == "custom" and start and end:
        params |= {"start": start.isoformat(), "end": end.isoformat()}
    return "?" + urlencode(params)


def page_context(
    account_id: str,
    asked: Mapping[str, Any],
    typed: Mapping[str, Any],
    zone: tzinfo,
    report: UsageReport | None,
    *,
    can_export: bool,
) -> dict[str, Any]:
    """The usage page's figures and links: ``asked`` is what the query string held that was
    valid (the form's cleaned data), ``typed`` the query string as given."""
    # On bad input the links start again from what was valid, so that each of them works.
    preset: Preset = asked.get("range") or DEFAULT_PRESET
    window_asked = asked.get("window_asked", asked.get("window"))
    window = asked.get("window") or default_window(preset)
    start = end = None
    if report is not None and report.range.preset == "custom":
        start = local_date(asked["start"], zone)
        end = local_date(asked["end"], zone) - DAY
    page_url = reverse("dashboard:usage", args=[account_id])
    context: dict[str, Any] = {
        "report": report,
        "zone_name": str(zone),
        "max_days": MAX_RANGE_DAYS,
        "window_links": [
            (label, page_url + query(key, preset, start, end), key == window)
            for key, label in WINDOWS.items()
        ],
        "preset_links": [
            (label, page_url + query(window_asked, key, None, None), key == preset)
            for key, label in PRESETS.items()
        ],
        "window": window,
        "self_url": page_url + query(window_asked, preset, start, end),
        "custom_start": typed.get("start") or "",
        "custom_end": typed.get("end") or "",
    }
    if report is None:
        return context
    if not context["custom_start"] and not context["custom_end"]:
        # Offer the dates shown as the starting point of a custom range.
        first, last = report.plan.start, min(report.plan.end, report.range.end)
        context["custom_start"] = local_date(first, zone).isoformat()
        context["custom_end"] = local_date(last - HOUR, zone).isoformat()
    context |= {
        "range_label": range_label(report),
        "rows": [(row_label(row, report), row) for row in report.rows],
        "chart": chart_data(report),
        "figures": summary_figures(report),
    }
    summary = report.summary
    if summary is not None and summary.busiest is not None:
        context["busiest_label"] = row_label(summary.busiest, report)
    if can_export:
        context["csv_url"] = reverse("dashboard:usage_csv", args=[account_id]) + query(
            window, preset, start, end
        )
    return context
