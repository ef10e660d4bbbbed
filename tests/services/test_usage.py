"""The usage report's pure parts: ranges, plans, chunks, bucketing, totals and CSV rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing_api import models
from dashboard.services import usage
from dashboard.services.usage import ReportRange, Row

BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")
LONDON = ZoneInfo("Europe/London")
SANTIAGO = ZoneInfo("America/Santiago")
# The simulator's frozen clock in the other tests: 14:30 in Berlin (CEST, UTC+2).
NOW = datetime(2026, 6, 10, 12, 30, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def hour_buckets(start: datetime, end: datetime, cents: int = 100) -> list[models.UsageBucket]:
    """Cloudflare's hourly buckets over [start, end), ``cents`` each."""
    buckets = []
    moment = start
    while moment < end:
        buckets.append(
            models.UsageBucket.model_validate(
                {
                    "id": f"mtrusgsum_{int(moment.timestamp())}",
                    "aggregated_value": cents,
                    "start_time": int(moment.timestamp() * 1000),
                    "end_time": int((moment + usage.HOUR).timestamp() * 1000),
                }
            )
        )
        moment += usage.HOUR
    return buckets


def report_for(
    window: usage.UsageWindow,
    rng: ReportRange,
    zone: tzinfo,
    now: datetime = NOW,
    rows: Sequence[Row] = (),
) -> usage.UsageReport:
    the_plan = usage.plan(window, rng, zone=zone, now=now)
    return usage.UsageReport(
        window=window,
        range=rng,
        plan=the_plan,
        zone=zone,
        rows=tuple(rows),
        summary=usage.summarize(rows),
    )


# ---------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("preset", "start", "end"),
    [
        # The last 24 complete hours: the one still running (12:00-13:00 UTC) is not counted.
        ("24h", utc(2026, 6, 9, 12), utc(2026, 6, 10, 12)),
        # Complete days in Berlin, today left out: local midnight is 22:00 UTC in summer.
        ("7d", utc(2026, 6, 2, 22), utc(2026, 6, 9, 22)),
        ("30d", utc(2026, 5, 10, 22), utc(2026, 6, 9, 22)),
        # 12 March is before the spring change: midnight in Berlin is 23:00 UTC then.
        ("90d", utc(2026, 3, 11, 23), utc(2026, 6, 9, 22)),
        ("mtd", utc(2026, 5, 31, 22), utc(2026, 6, 10, 12)),
        ("last-month", utc(2026, 4, 30, 22), utc(2026, 5, 31, 22)),
    ],
)
def test_it_resolves_each_preset_in_the_reporting_zone(preset, start, end):
    rng = usage.resolve_range(preset, now=NOW, zone=BERLIN)
    assert (rng.start, rng.end) == (start, end)
    assert rng.to_now == (preset in ("24h", "mtd"))


def test_it_resolves_last_month_across_the_spring_dst_change():
    rng = usage.resolve_range("last-month", now=utc(2026, 4, 2, 10), zone=BERLIN)
    # March in Berlin starts at CET (UTC+1) and ends at CEST (UTC+2): one hour short.
    assert rng.start == utc(2026, 2, 28, 23)
    assert rng.end == utc(2026, 3, 31, 22)
    assert rng.end - rng.start == timedelta(days=31) - usage.HOUR


def test_it_resolves_month_to_date_on_the_first_of_the_month():
    rng = usage.resolve_range("mtd", now=utc(2026, 6, 30, 22, 30), zone=BERLIN)
    # 00:30 on 1 July in Berlin: the month has just begun, and no hour of it is over yet.
    assert rng.start == utc(2026, 6, 30, 22)
    assert rng.end == utc(2026, 6, 30, 22)


def test_it_resolves_last_month_in_january():
    rng = usage.resolve_range("last-month", now=utc(2026, 1, 15), zone=UTC)
    assert (rng.start, rng.end) == (utc(2025, 12, 1), utc(2026, 1, 1))


def test_it_starts_a_day_whose_midnight_dst_skips_at_one_oclock():
    # Santiago moves its clocks from 00:00 to 01:00 on 6 September 2026.
    start = usage.local_midnight(date(2026, 9, 6), SANTIAGO)
    assert start == utc(2026, 9, 6, 4)
    assert start.astimezone(SANTIAGO).hour == 1


def test_it_accepts_a_custom_range():
    start = usage.local_midnight(date(2026, 6, 1), BERLIN)
    end = usage.local_midnight(date(2026, 6, 5), BERLIN)
    rng = usage.resolve_range("custom", now=NOW, zone=BERLIN, start=start, end=end)
    assert (rng.start, rng.end, rng.to_now) == (utc(2026, 5, 31, 22), utc(2026, 6, 4, 22), False)


def test_it_cuts_a_custom_range_at_now():
    start = usage.local_midnight(date(2026, 6, 1), BERLIN)
    end = usage.local_midnight(date(2026, 6, 11), BERLIN)
    rng = usage.resolve_range("custom", now=NOW, zone=BERLIN, start=start, end=end)
    assert rng.end == utc(2026, 6, 10, 12)  # the end of the last complete hour
    assert rng.to_now


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (date(2026, 6, 5), date(2026, 6, 1), "before the start date"),
        (date(2026, 6, 11), date(2026, 6, 12), "starts in the future"),
        (date(2026, 1, 1), date(2026, 6, 1), "at most 93 days"),
    ],
)
def test_it_refuses_a_custom_range_it_cannot_show(start, end, message):
    with pytest.raises(usage.RangeError, match=message):
        usage.resolve_range(
            "custom",
            now=NOW,
            zone=BERLIN,
            start=usage.local_midnight(start, BERLIN),
            end=usage.local_midnight(end, BERLIN),
        )


def test_it_refuses_a_custom_range_without_both_dates():
    with pytest.raises(usage.RangeError, match="both a start date and an end date"):
        usage.resolve_range("custom", now=NOW, zone=BERLIN, start=NOW - timedelta(days=2))


def test_it_allows_93_days_but_not_94():
    first = date(2026, 3, 1)
    ok = usage.local_midnight(first + timedelta(days=93), BERLIN)
    usage.resolve_range(
        "custom", now=NOW, zone=BERLIN, start=usage.local_midnight(first, BERLIN), end=ok
    )
    with pytest.raises(usage.RangeError):
        usage.resolve_range(
            "custom",
            now=NOW,
            zone=BERLIN,
            start=usage.local_midnight(first - timedelta(days=1), BERLIN),
            end=ok,
        )


# ---------------------------------------------------------------- chunks and plans


def test_it_splits_a_long_span_into_contiguous_chunks_of_at_most_31_days():
    start = utc(2026, 3, 1)
    chunks = usage.split_span(start, start + timedelta(days=93), usage.MAX_HOURLY_SPAN)
    assert len(chunks) == 3
    assert all(end - begin <= timedelta(days=31) for begin, end in chunks)
    assert chunks[0][0] == start and chunks[-1][1] == start + timedelta(days=93)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))


def test_it_adds_a_chunk_for_the_hour_past_93_days():
    start = utc(2026, 3, 1)
    chunks = usage.split_span(start, start + timedelta(days=93, hours=1), usage.MAX_HOURLY_SPAN)
    assert len(chunks) == 4 and chunks[-1][1] - chunks[-1][0] == usage.HOUR


def test_it_does_not_split_a_short_span():
    assert usage.split_span(utc(2026, 6, 1), utc(2026, 6, 2), usage.MAX_HOURLY_SPAN) == [
        (utc(2026, 6, 1), utc(2026, 6, 2))
    ]
    assert usage.split_span(utc(2026, 6, 1), utc(2026, 6, 1), usage.MAX_HOURLY_SPAN) == []


def test_it_plans_90_days_of_hours_as_three_calls():
    rng = usage.resolve_range("90d", now=NOW, zone=UTC)
    the_plan = usage.plan("hour", rng, zone=UTC, now=NOW)
    assert the_plan.source == "hour" and len(the_plan.chunks) == 3
    assert the_plan.chunks[0][0] == rng.start and the_plan.chunks[-1][1] == utc(2026, 6, 10)


def test_it_plans_utc_days_as_one_call_for_cloudflares_day_buckets():
    rng = usage.resolve_range("30d", now=NOW, zone=UTC)
    the_plan = usage.plan("day", rng, zone=UTC, now=NOW)
    assert the_plan.source == "day" and not the_plan.local_days and not the_plan.utc_days
    # The 30 complete days, aligned to midnight UTC at both ends.
    assert the_plan.chunks == ((utc(2026, 5, 11), utc(2026, 6, 10)),)


def test_it_adds_up_a_utc_day_still_running_from_its_complete_hours():
    rng = usage.resolve_range("mtd", now=NOW, zone=UTC)
    the_plan = usage.plan("day", rng, zone=UTC, now=NOW)
    # Cloudflare's bucket for today would include the hour still running.
    assert the_plan.source == "hour" and the_plan.local_days
    assert the_plan.chunks == ((utc(2026, 6, 1), utc(2026, 6, 10, 12)),)


def test_it_plans_berlin_days_as_hours_added_up():
    rng = usage.resolve_range("mtd", now=NOW, zone=BERLIN)
    the_plan = usage.plan("day", rng, zone=BERLIN, now=NOW)
    assert the_plan.source == "hour" and the_plan.local_days
    assert (the_plan.start, the_plan.end) == (utc(2026, 5, 31, 22), utc(2026, 6, 10, 22))
    # The hour still running is not counted, and later ones do not exist yet.
    assert the_plan.chunks == ((utc(2026, 5, 31, 22), utc(2026, 6, 10, 12)),)


def test_it_plans_london_winter_days_as_cloudflares_day_buckets():
    now = utc(2026, 1, 20, 9)
    the_plan = usage.plan(
        "day", usage.resolve_range("7d", now=now, zone=LONDON), zone=LONDON, now=now
    )
    assert the_plan.source == "day" and not the_plan.utc_days


def test_it_falls_back_to_utc_days_where_local_midnight_is_not_on_an_hour():
    rng = usage.resolve_range("7d", now=NOW, zone=KOLKATA)
    the_plan = usage.plan("day", rng, zone=KOLKATA, now=NOW)
    assert the_plan.source == "day" and the_plan.utc_days
    assert the_plan.start == utc(2026, 6, 2)  # the UTC day holding 3 June 00:00 IST


def test_it_widens_24_hours_to_whole_days_for_day_buckets():
    rng = usage.resolve_range("24h", now=NOW, zone=BERLIN)
    the_plan = usage.plan("day", rng, zone=BERLIN, now=NOW)
    assert (the_plan.start, the_plan.end) == (utc(2026, 6, 8, 22), utc(2026, 6, 10, 22))


# ---------------------------------------------------------------- rows


def test_it_adds_up_hours_into_local_days_with_23_and_25_hours_at_dst_changes():
    now = utc(2026, 11, 2, 12)
    rng = usage.resolve_range(
        "custom",
        now=now,
        zone=BERLIN,
        start=usage.local_midnight(date(2026, 3, 28), BERLIN),
        end=usage.local_midnight(date(2026, 3, 31), BERLIN),
    )
    the_plan = usage.plan("day", rng, zone=BERLIN, now=now)
    rows = usage.rows_from_buckets(
        hour_buckets(the_plan.start, the_plan.end), the_plan, zone=BERLIN, now=now
    )
    assert [r.spend for r in rows] == [Decimal("24"), Decimal("23"), Decimal("24")]
    assert [r.start.astimezone(BERLIN).date() for r in rows] == [
        date(2026, 3, 28),
        date(2026, 3, 29),
        date(2026, 3, 30),
    ]
    autumn = usage.ReportRange(
        "custom",
        usage.local_midnight(date(2026, 10, 25), BERLIN),
        usage.local_midnight(date(2026, 10, 26), BERLIN),
    )
    autumn_plan = usage.plan("day", autumn, zone=BERLIN, now=now)
    rows = usage.rows_from_buckets(
        hour_buckets(autumn_plan.start, autumn_plan.end), autumn_plan, zone=BERLIN, now=now
    )
    assert [r.spend for r in rows] == [Decimal("25")]


def test_it_counts_a_bucket_seen_twice_once_and_keeps_order():
    rng = ReportRange("24h", utc(2026, 6, 9, 13), utc(2026, 6, 10, 13))
    the_plan = usage.plan("hour", rng, zone=UTC, now=NOW)
    buckets = hour_buckets(utc(2026, 6, 10, 0), utc(2026, 6, 10, 3))
    rows = usage.rows_from_buckets([*reversed(buckets), buckets[1]], the_plan, zone=UTC, now=NOW)
    assert [r.start.hour for r in rows] == [0, 1, 2]


def test_it_marks_the_bucket_still_running():
    rng = usage.resolve_range("mtd", now=NOW, zone=BERLIN)
    the_plan = usage.plan("day", rng, zone=BERLIN, now=NOW)
    rows = usage.rows_from_buckets(
        hour_buckets(the_plan.start, utc(2026, 6, 10, 12)), the_plan, zone=BERLIN, now=NOW
    )
    assert len(rows) == 10
    assert [r.in_progress for r in rows] == [False] * 9 + [True]
    assert rows[-1].spend == Decimal("14")  # 00:00 to 14:00 in Berlin


# ---------------------------------------------------------------- totals


def row(day: int, spend: str, in_progress: bool = False) -> Row:
    start = utc(2026, 6, day)
    return Row(start, start + usage.DAY, Decimal(spend), in_progress)


def test_it_totals_averages_and_finds_the_busiest_bucket():
    rows = [row(1, "1.25"), row(2, "7.5"), row(3, "7.5"), row(4, "0.75", in_progress=True)]
    summary = usage.summarize(rows)
    assert summary.total == Decimal("17.00")
    # The day still running would pull the average down: it is left out.
    assert summary.average == Decimal("16.25") / 3
    assert summary.complete_buckets == 3
    assert summary.busiest == rows[1]  # the earlier of two equals


def test_it_has_no_average_or_busiest_bucket_without_spend():
    summary = usage.summarize([row(1, "0", in_progress=True)])
    assert summary.total == 0 and summary.average is None and summary.busiest is None
    assert usage.summarize([]).total == 0


# ---------------------------------------------------------------- labels


def test_it_names_the_repeated_hour_of_the_autumn_change():
    rng = ReportRange("custom", utc(2026, 10, 25, 0), utc(2026, 10, 25, 2))
    rows = [
        Row(utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), Decimal(1)),
        Row(utc(2026, 10, 25, 1), utc(2026, 10, 25, 2), Decimal(1)),
    ]
    report = report_for("hour", rng, BERLIN, now=utc(2026, 11, 1), rows=rows)
    assert [usage.row_label(r, report) for r in rows] == [
        "Sun 25 Oct 2026, 02:00 CEST",
        "Sun 25 Oct 2026, 02:00 CET",
    ]


def test_it_labels_days_in_the_zone_and_utc_days_as_utc():
    rng = usage.resolve_range("7d", now=NOW, zone=KOLKATA)
    rows = [Row(utc(2026, 6, 3), utc(2026, 6, 4), Decimal(1))]
    report = report_for("day", rng, KOLKATA, rows=rows)
    assert usage.row_label(rows[0], report) == "Wed 3 Jun 2026"
    assert usage.range_label(report) == "2 Jun 2026 to 9 Jun 2026"


# ---------------------------------------------------------------- CSV


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\tx", "'\tx"),
        ("-1.50", "-1.50"),
        ("12.3456", "12.3456"),
        ("2026-06-10T14:00:00+02:00", "2026-06-10T14:00:00+02:00"),
    ],
)
def test_it_makes_csv_cells_inert_for_spreadsheets(value, safe):
    assert usage.csv_cell(value) == safe


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        ("50.00", "50.00"),
        ("12", "12.00"),
        ("1.5", "1.50"),
        ("1.2345", "1.2345"),
        ("1.2300", "1.23"),
        ("0", "0.00"),
        ("1E-9", "0.000000001"),
        ("-3.2", "-3.20"),
    ],
)
def test_it_writes_dollars_with_two_or_more_decimals(amount, text):
    assert usage.money_text(Decimal(amount)) == text


def test_it_writes_csv_rows_with_local_and_utc_starts():
    rng = usage.resolve_range("24h", now=NOW, zone=BERLIN)
    rows = [Row(utc(2026, 6, 10, 8), utc(2026, 6, 10, 9), Decimal("6.4019"))]
    report = report_for("hour", rng, BERLIN, rows=rows)
    assert usage.csv_rows(report) == [
        ["bucket_start (Europe/Berlin)", "bucket_start_utc", "spend_usd"],
        ["2026-06-10T10:00:00+02:00", "2026-06-10T08:00:00Z", "6.4019"],
    ]
    assert usage.csv_filename("abc", report) == "usage-abc-2026-06-09-2026-06-10-hour.csv"


def test_it_writes_utc_days_in_utc():
    rng = usage.resolve_range("7d", now=NOW, zone=KOLKATA)
    rows = [Row(utc(2026, 6, 3), utc(2026, 6, 4), Decimal("2"))]
    report = report_for("day", rng, KOLKATA, rows=rows)
    assert usage.csv_rows(report)[0][0] == "bucket_start (UTC)"
    assert usage.csv_rows(report)[1] == [
        "2026-06-03T00:00:00+00:00",
        "2026-06-03T00:00:00Z",
        "2.00",
    ]
    assert usage.csv_filename("abc", report) == "usage-abc-2026-06-02-2026-06-09-day.csv"
