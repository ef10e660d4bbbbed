"""The overview's arithmetic: burn rates, runway, next auto top-up, month to date, limits."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_api.models import UsageBucket
from dashboard.services import runway as rw

NOW = datetime(2026, 6, 10, 12, 30, tzinfo=UTC)  # a Wednesday
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+5:30: local midnight is not on a UTC hour


def hours(start: datetime, end: datetime, per_hour: Decimal | str = "1") -> list[UsageBucket]:
    """One bucket per UTC hour in [start, end), each ``per_hour`` dollars."""
    value = Decimal(per_hour)
    buckets: list[UsageBucket] = []
    moment = start
    while moment < end:
        buckets.append(
            # model_construct: the values are dollars already (validation reads cents).
            UsageBucket.model_construct(
                id=f"b{len(buckets)}",
                aggregated_value=value,
                start_time=moment,
                end_time=moment + rw.HOUR,
            )
        )
        moment += rw.HOUR
    return buckets


def rate(per_day: str, days: int = 7) -> rw.BurnRate:
    return rw.BurnRate(Decimal(per_day), days, 7, date(2026, 6, 3), date(2026, 6, 9))


# ---------------------------------------------------------------- the range read


def test_it_reads_from_local_midnight_30_days_ago_to_the_last_complete_hour():
    span = rw.usage_range(NOW, UTC)
    assert span.start == datetime(2026, 5, 11, tzinfo=UTC)
    assert span.end == datetime(2026, 6, 10, 12, tzinfo=UTC)


def test_it_starts_the_range_at_local_midnight_in_the_reporting_zone():
    span = rw.usage_range(NOW, BERLIN)
    assert span.start == datetime(2026, 5, 10, 22, tzinfo=UTC)  # 11 May 00:00 CEST


def test_it_aligns_the_range_so_that_everyone_in_the_same_hour_asks_the_same():
    assert rw.usage_range(NOW, BERLIN) == rw.usage_range(NOW + timedelta(minutes=29), BERLIN)
    assert rw.usage_range(NOW, BERLIN) != rw.usage_range(NOW + timedelta(minutes=31), BERLIN)


@pytest.mark.parametrize("tz", [UTC, BERLIN, NEW_YORK, KOLKATA, ZoneInfo("Australia/Lord_Howe")])
def test_it_never_asks_for_more_than_cloudflares_31_days_of_hours(tz):
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    while moment < datetime(2027, 1, 1, tzinfo=UTC):
        span = rw.usage_range(moment, tz)
        assert span.end - span.start <= rw.MAX_HOURLY_SPAN
        assert span.start.minute == 0 and span.end.minute == 0
        # The month so far always fits in the range.
        assert rw.ceil_hour(rw.month_start(moment, tz)) >= span.start
        moment += timedelta(hours=7)


# ---------------------------------------------------------------- days


def test_it_sums_hours_into_complete_days_and_leaves_today_incomplete():
    start = datetime(2026, 6, 7, tzinfo=UTC)
    end = datetime(2026, 6, 10, 12, tzinfo=UTC)
    days = rw.daily_totals(hours(start, end, "0.5"), UTC, start, end)
    assert [(d.day.day, d.total, d.complete) for d in days] == [
        (7, Decimal("12.0"), True),
        (8, Decimal("12.0"), True),
        (9, Decimal("12.0"), True),
        (10, Decimal("6.0"), False),
    ]


def test_it_counts_days_of_the_reporting_zone_not_utc():
    start = datetime(2026, 6, 7, 22, tzinfo=UTC)  # 8 June 00:00 in Berlin
    end = datetime(2026, 6, 9, 22, tzinfo=UTC)
    days = rw.daily_totals(hours(start, end), BERLIN, start, end)
    assert [(d.day, d.total, d.complete) for d in days] == [
        (date(2026, 6, 8), Decimal(24), True),
        (date(2026, 6, 9), Decimal(24), True),
    ]


@pytest.mark.parametrize(
    ("day", "length"),
    [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25)],
    ids=["spring-forward", "fall-back"],
)
def test_it_counts_a_dst_day_of_23_or_25_hours_as_one_complete_day(day, length):
    start = rw.local_midnight(day - timedelta(days=1), BERLIN)
    end = rw.local_midnight(day + timedelta(days=2), BERLIN)
    days = rw.daily_totals(hours(start, end), BERLIN, start, end)
    assert [d.total for d in days] == [Decimal(24), Decimal(length), Decimal(24)]
    assert all(d.complete for d in days)
    burn = rw.burn_rate(days, 7)
    assert burn is not None and burn.days == 3
    assert burn.per_day == Decimal(48 + length) / 3


def test_it_puts_an_hour_straddling_midnight_in_the_day_it_starts_in_a_half_hour_zone():
    start = rw.floor_hour(rw.local_midnight(date(2026, 6, 8), KOLKATA))  # 7 June 23:30 local
    end = rw.floor_hour(rw.local_midnight(date(2026, 6, 10), KOLKATA))  # 9 June 23:30 local
    days = rw.daily_totals(hours(start, end), KOLKATA, start, end)
    assert [(d.day.day, d.total, d.complete) for d in days] == [
        (7, Decimal(1), False),
        (8, Decimal(24), True),
        (9, Decimal(23), False),  # its last hour (23:30-00:30) is not over
    ]


def test_it_does_not_count_days_before_the_account_has_history():
    start = datetime(2026, 6, 1, tzinfo=UTC)
    end = datetime(2026, 6, 10, 12, tzinfo=UTC)
    history = hours(datetime(2026, 6, 8, 6, tzinfo=UTC), end)
    days = rw.daily_totals(history, UTC, start, end)
    assert [d.day.day for d in days if d.complete] == [9]
    assert rw.history_start(history, start) == datetime(2026, 6, 8, 6, tzinfo=UTC)


def test_it_reads_no_bucket_at_all_as_no_usage():
    start = datetime(2026, 6, 1, tzinfo=UTC)
    end = datetime(2026, 6, 10, 12, tzinfo=UTC)
    days = rw.daily_totals([], UTC, start, end)
    burn = rw.burn_rate(days, 7)
    assert burn is not None and burn.per_day == 0 and burn.days == 7


# ---------------------------------------------------------------- burn rates


def test_it_averages_the_last_n_complete_days():
    days = [rw.DayTotal(date(2026, 6, d), Decimal(d), True) for d in range(1, 10)]
    days.append(rw.DayTotal(date(2026, 6, 10), Decimal(1000), False))
    burn = rw.burn_rate(days, 7)
    assert burn is not None
    assert burn.per_day == Decimal(3 + 4 + 5 + 6 + 7 + 8 + 9) / 7
    assert (burn.first, burn.last, burn.days, burn.short) == (
        date(2026, 6, 3),
        date(2026, 6, 9),
        7,
        False,
    )


def test_it_says_when_there_are_fewer_complete_days_than_asked():
    days = [rw.DayTotal(date(2026, 6, d), Decimal(10), True) for d in (8, 9)]
    burn = rw.burn_rate(days, 30)
    assert burn is not None and burn.days == 2 and burn.short and burn.per_day == 10


def test_it_has_no_rate_without_a_complete_day():
    assert rw.burn_rate([rw.DayTotal(date(2026, 6, 10), Decimal(5), False)], 7) is None
    assert rw.burn_rate([], 7) is None


# ---------------------------------------------------------------- runway


def test_it_dates_the_day_the_balance_reaches_zero():
    forecast = rw.runway(Decimal(100), rate("10"), NOW)
    assert forecast.kind == "runs-out"
    assert forecast.zero_at == NOW + timedelta(days=10)


def test_it_says_nothing_runs_out_without_spend():
    forecast = rw.runway(Decimal(100), rate("0"), NOW)
    assert forecast.kind == "no-burn" and forecast.zero_at is None


@pytest.mark.parametrize("balance", ["0", "-12.50"])
def test_it_says_an_empty_or_negative_balance_is_already_overdrawn(balance):
    assert rw.runway(Decimal(balance), rate("10"), NOW).kind == "overdrawn"
    assert rw.runway(Decimal(balance), rate("0"), NOW).kind == "overdrawn"


def test_it_makes_no_forecast_without_a_rate():
    assert rw.runway(Decimal(100), None, NOW).kind == "no-rate"


def test_it_does_not_name_a_date_beyond_a_year():
    forecast = rw.runway(Decimal(100_000), rate("0.01"), NOW)
    assert forecast.kind == "runs-out" and forecast.zero_at is None


def test_it_expects_the_next_auto_topup_when_the_balance_crosses_the_threshold():
    rule = rw.AutoTopup(amount=Decimal(50), threshold=Decimal(40))
    forecast = rw.runway(Decimal(100), rate("10"), NOW, rule)
    assert forecast.kind == "funded"
    assert forecast.next_topup_at == NOW + timedelta(days=6)
    assert forecast.topup_every == timedelta(days=5)
    assert forecast.zero_at == NOW + timedelta(days=10)  # without top-ups
    assert not forecast.topup_due


def test_it_says_a_topup_is_due_when_the_threshold_is_above_the_balance():
    rule = rw.AutoTopup(amount=Decimal(50), threshold=Decimal(200))
    forecast = rw.runway(Decimal(100), rate("10"), NOW, rule)
    assert forecast.kind == "funded" and forecast.topup_due
    assert forecast.next_topup_at == NOW


def test_it_expects_auto_topup_to_refill_a_negative_balance():
    rule = rw.AutoTopup(amount=Decimal(50), threshold=Decimal(5))
    forecast = rw.runway(Decimal("-3"), rate("0"), NOW, rule)
    assert forecast.kind == "funded" and forecast.topup_due
    assert forecast.topup_every is None  # no spend: no rhythm to name


def test_it_expects_no_topup_without_spend_above_the_threshold():
    rule = rw.AutoTopup(amount=Decimal(50), threshold=Decimal(5))
    assert rw.runway(Decimal(100), rate("0"), NOW, rule).kind == "no-burn"


# ---------------------------------------------------------------- hours as kept


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=72),
            st.one_of(*[st.decimals(min_value=-5, max_value=50, places=n) for n in (0, 2, 6)]),
        ),
        max_size=80,
    ),
    st.integers(min_value=-2, max_value=75),
    st.integers(min_value=-2, max_value=75),
    st.sampled_from([timedelta(0), timedelta(minutes=30), timedelta(microseconds=1)]),
)
def test_kept_hours_sum_any_span_as_the_buckets_do(shape, first, last, nudge):
    origin = datetime(2026, 6, 1, tzinfo=UTC)
    buckets = [
        UsageBucket.model_construct(
            id=str(n),
            aggregated_value=value,
            start_time=origin + hour * rw.HOUR,
            end_time=origin + (hour + 1) * rw.HOUR,
        )
        for n, (hour, value) in enumerate(shape)
    ]
    start, end = origin + first * rw.HOUR + nudge, origin + last * rw.HOUR
    expected = sum((b.aggregated_value for b in buckets if start <= b.start_time < end), Decimal(0))
    assert rw.Hours.of(buckets).between(start, end) == expected


def test_kept_hours_keep_every_digit():
    buckets = hours(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, 3, tzinfo=UTC))
    buckets[1] = buckets[1].model_copy(update={"aggregated_value": Decimal("0.000001")})
    kept = rw.Hours.of(buckets)
    assert kept.between(datetime(2026, 5, 1, tzinfo=UTC), NOW) == Decimal("2.000001")
    assert kept.between(NOW, NOW - rw.HOUR) == 0


# ---------------------------------------------------------------- month to date


def test_it_sums_the_month_from_local_midnight_on_the_1st():
    start = datetime(2026, 5, 31, 20, tzinfo=UTC)
    end = datetime(2026, 6, 10, 12, tzinfo=UTC)
    history = hours(start, end)
    month = rw.month_to_date(rw.Hours.of(history), NOW, BERLIN, start, end)
    assert month.since == datetime(2026, 5, 31, 22, tzinfo=UTC)  # 1 June 00:00 CEST
    assert month.total == Decimal(9 * 24 + 14)  # 1 June 00:00 to 10 June 14:00 local
    assert month.complete
    assert month.projected is None


def test_it_projects_the_month_at_the_7_day_rate():
    start = datetime(2026, 6, 1, tzinfo=UTC)
    end = datetime(2026, 6, 10, 12, tzinfo=UTC)
    month = rw.month_to_date(rw.Hours.of(hours(start, end)), NOW, UTC, start, end, rate("24"))
    assert month.total == Decimal(9 * 24 + 12)
    # 20.5 days left in June at $24 a day.
    assert month.projected == month.total + Decimal(24 * 20.5)


def test_it_says_when_history_starts_after_the_1st():
    start = datetime(2026, 6, 5, tzinfo=UTC)
    end = datetime(2026, 6, 10, 12, tzinfo=UTC)
    month = rw.month_to_date(rw.Hours.of(hours(start, end)), NOW, UTC, start, end)
    assert not month.complete


def test_it_finds_the_1st_across_a_year_end():
    now = datetime(2027, 1, 1, 4, tzinfo=UTC)  # still 31 December in New York
    assert rw.month_start(now, NEW_YORK) == datetime(2026, 12, 1, 5, tzinfo=UTC)


# ---------------------------------------------------------------- spending-limit windows


@pytest.mark.parametrize(
    ("duration", "strategy", "start"),
    [
        ("daily", "fixed", datetime(2026, 6, 9, 22, tzinfo=UTC)),
        ("weekly", "fixed", datetime(2026, 6, 7, 22, tzinfo=UTC)),  # Monday 8 June
        ("monthly", "fixed", datetime(2026, 5, 31, 22, tzinfo=UTC)),
        ("monthly", None, datetime(2026, 5, 31, 22, tzinfo=UTC)),
        ("daily", "sliding", datetime(2026, 6, 9, 12, tzinfo=UTC)),
        ("weekly", "sliding", datetime(2026, 6, 3, 12, tzinfo=UTC)),
        ("monthly", "sliding", datetime(2026, 5, 11, 12, tzinfo=UTC)),
    ],
)
def test_it_starts_each_limit_window_where_it_should(duration, strategy, start):
    assert rw.limit_window_start(duration, strategy, NOW, BERLIN) == start


def test_it_refuses_an_unknown_window():
    with pytest.raises(ValueError, match="yearly"):
        rw.limit_window_start("yearly", "fixed", NOW, UTC)


def test_it_measures_how_much_of_the_window_is_used():
    start = datetime(2026, 6, 1, tzinfo=UTC)
    end = datetime(2026, 6, 10, 12, tzinfo=UTC)
    kept = rw.Hours.of(hours(start, end))
    window = rw.limit_window(kept, Decimal(48), "daily", "fixed", NOW, UTC, end)
    assert window.used == Decimal(12)
    assert window.percent == Decimal(25)
    assert window.left == Decimal(36)
    assert not window.exceeded


def test_it_says_when_the_limit_is_reached():
    window = rw.LimitWindow(NOW, NOW, used=Decimal(60), limit=Decimal(50))
    assert window.exceeded and window.left == 0 and window.percent == Decimal(120)
    assert rw.LimitWindow(NOW, NOW, Decimal(0), Decimal(0)).percent == 100


# ---------------------------------------------------------------- words


@pytest.mark.parametrize(
    ("every", "words"),
    [
        (timedelta(minutes=20), "more than once an hour"),
        (timedelta(hours=1), "about every hour"),
        (timedelta(hours=6), "about every 6 hours"),
        (timedelta(hours=26), "about once a day"),
        (timedelta(days=5), "about every 5 days"),
        (timedelta(days=21), "about every 3 weeks"),
        (timedelta(days=95), "about every 3 months"),
        (timedelta(days=400), "less than once a year"),
    ],
)
def test_it_describes_how_often_in_round_words(every, words):
    assert rw.describe_interval(every) == words
