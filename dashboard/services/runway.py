"""Pure arithmetic of the overview: burn rate, runway, next auto top-up, month to date, limits.

No Django, no I/O: data, ``now`` and the zone are arguments, so tests pin each edge case. Hours
are grouped into local days (a DST day of 23 or 25 hours is one day); only complete days count
towards a burn rate, or every morning would drag it down.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Literal, NamedTuple, Protocol


class UsageBucket(Protocol):
    """An hour of usage, as Cloudflare's bucket has it."""

    @property
    def start_time(self) -> datetime: ...

    @property
    def aggregated_value(self) -> Decimal: ...


HOUR = timedelta(hours=1)
#: Cloudflare answers at most 31 days of hourly buckets in one call.
MAX_HOURLY_SPAN = timedelta(days=31)
#: The burn rates shown: the last week (the runway uses it) and the last month.
SHORT_DAYS = 7
LONG_DAYS = 30
#: Past this a date is too far off to be worth naming.
HORIZON = timedelta(days=366)
ZERO = Decimal(0)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """Midnight starting ``day`` in ``tz``, in UTC. Where DST skips midnight (Santiago), the day
    starts at 01:00: zoneinfo reads a skipped time with the offset from before the change."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def month_start(now: datetime, tz: tzinfo) -> datetime:
    """The 1st of the month containing ``now`` in ``tz``, at local midnight, in UTC."""
    return local_midnight(now.astimezone(tz).date().replace(day=1), tz)


def week_start(now: datetime, tz: tzinfo) -> datetime:
    """Monday of the week containing ``now`` in ``tz``, at local midnight, in UTC."""
    today = now.astimezone(tz).date()
    return local_midnight(today - timedelta(days=today.weekday()), tz)


class UsageRange(NamedTuple):
    """The hourly usage the overview reads: one call, aligned to the hour so viewers share it."""

    start: datetime
    end: datetime


def usage_range(now: datetime, tz: tzinfo) -> UsageRange:
    """From local midnight ``LONG_DAYS`` days ago to the end of the last complete hour: both
    burn rates, the month so far and every spending-limit window."""
    end = floor_hour(now)
    today = now.astimezone(tz).date()
    start = floor_hour(local_midnight(today - timedelta(days=LONG_DAYS), tz))
    # A DST change or a half-hour offset can push the span past Cloudflare's limit.
    start = max(start, end - MAX_HOURLY_SPAN)
    return UsageRange(start, end)


def history_start(buckets: Iterable[UsageBucket], data_start: datetime) -> datetime:
    """Where the data really starts: Cloudflare sends no bucket before an account's history."""
    return max(data_start, min((b.start_time for b in buckets), default=data_start))


@dataclass(frozen=True)
class DayTotal:
    day: date
    total: Decimal
    complete: bool


def daily_totals(
    buckets: Iterable[UsageBucket], tz: tzinfo, data_start: datetime, data_end: datetime
) -> list[DayTotal]:
    """Hourly buckets summed per local day (the day an hour starts in), oldest first; a day is
    complete when all its hours are in ``[data_start, data_end)``. Days before Cloudflare's
    first bucket (a new account) are left out, not zero."""
    ordered = sorted(buckets, key=lambda b: b.start_time)
    data_start = history_start(ordered, data_start)
    first = data_start.astimezone(tz).date()
    last = (data_end - timedelta(microseconds=1)).astimezone(tz).date()
    totals = {first + timedelta(days=n): ZERO for n in range((last - first).days + 1)}
    for bucket in ordered:
        if data_start <= bucket.start_time < data_end:
            totals[bucket.start_time.astimezone(tz).date()] += bucket.aggregated_value
    result = []
    for day, total in totals.items():
        begins = ceil_hour(local_midnight(day, tz))
        ends = ceil_hour(local_midnight(day + timedelta(days=1), tz))
        result.append(DayTotal(day, total, begins >= data_start and ends <= data_end))
    return result


@dataclass(frozen=True)
class BurnRate:
    """Average spend per day over ``days`` complete days (fewer than asked if history is short)."""

    per_day: Decimal
    days: int
    asked: int
    first: date
    last: date

    @property
    def short(self) -> bool:
        return self.days < self.asked


def burn_rate(days: Sequence[DayTotal], count: int) -> BurnRate | None:
    complete = [d for d in days if d.complete][-count:]
    if not complete:
        return None
    total = sum((d.total for d in complete), ZERO)
    return BurnRate(total / len(complete), len(complete), count, complete[0].day, complete[-1].day)


class AutoTopup(NamedTuple):
    """An auto top-up rule: below ``threshold``, add ``amount``."""

    threshold: Decimal
    amount: Decimal


RunwayKind = Literal["no-rate", "overdrawn", "no-burn", "runs-out", "funded"]


@dataclass(frozen=True)
class Runway:
    """What happens to the balance at the burn rate: ``no-rate`` (no complete day yet),
    ``overdrawn`` (zero or below: Cloudflare lets it go negative), ``no-burn``, ``runs-out`` at
    ``zero_at`` (None: beyond the horizon), or ``funded`` by auto top-up, next due at
    ``next_topup_at`` and every ``topup_every`` (``zero_at``: when it would run out without)."""

    kind: RunwayKind
    rate: BurnRate | None
    zero_at: datetime | None = None
    next_topup_at: datetime | None = None
    topup_every: timedelta | None = None
    topup_due: bool = False


def _after(now: datetime, amount: Decimal, rate: Decimal) -> datetime | None:
    """When ``amount`` is spent at ``rate`` per day from ``now``; None beyond the horizon."""
    days = amount / rate
    if days * 86_400 > Decimal(HORIZON.total_seconds()):
        return None
    return now + timedelta(days=float(days))


def runway(
    balance: Decimal,
    rate: BurnRate | None,
    now: datetime,
    auto_topup: AutoTopup | None = None,
) -> Runway:
    if rate is None:
        return Runway("no-rate", None)
    per_day = rate.per_day
    zero_at = _after(now, balance, per_day) if per_day > 0 and balance > 0 else None
    due = auto_topup is not None and balance < auto_topup.threshold
    if auto_topup is not None and (per_day > 0 or due):
        next_at = now if due else _after(now, balance - auto_topup.threshold, per_day)
        every = None
        if auto_topup.amount > 0 and per_day > 0:
            every = timedelta(days=float(auto_topup.amount / per_day))
        return Runway("funded", rate, zero_at, next_at, every, topup_due=due)
    if balance <= 0:
        return Runway("overdrawn", rate)
    if per_day <= 0:
        return Runway("no-burn", rate)
    return Runway("runs-out", rate, zero_at)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Hours:
    """Hourly spend as kept with a read: each hour's start (microseconds since 1970) and the
    running total before it, in whole 10**-scale dollars. Any span's spend is two lookups, and
    a page unpickles ints, not 720 Decimals and datetimes (0.9 ms of each overview's 12)."""

    starts: tuple[int, ...]
    #: ``totals[i]``: the spend of the hours before ``starts[i]``; one more than ``starts``.
    totals: tuple[int, ...]
    scale: int

    @classmethod
    def of(cls, buckets: Iterable[UsageBucket]) -> Hours:
        ordered = sorted(buckets, key=lambda b: b.start_time)
        scale = max((_places(b.aggregated_value) for b in ordered), default=0)
        totals = [0]
        for bucket in ordered:
            totals.append(totals[-1] + int(bucket.aggregated_value.scaleb(scale)))
        return cls(tuple(_micros(b.start_time) for b in ordered), tuple(totals), scale)

    def between(self, start: datetime, end: datetime) -> Decimal:
        """The spend of the hours starting in ``[start, end)``."""
        first = bisect_left(self.starts, _micros(start))
        last = max(first, bisect_left(self.starts, _micros(end)))
        return Decimal(self.totals[last] - self.totals[first]).scaleb(-self.scale)


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def _places(value: Decimal) -> int:
    """Digits after the point (Cloudflare's amounts are finite: the models refuse others)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


@dataclass(frozen=True)
class MonthToDate:
    total: Decimal
    since: datetime
    until: datetime
    #: The read reaches back to the 1st (it does, unless the account is newer).
    complete: bool
    #: At the 7-day rate, what the month comes to by its end (None without a rate).
    projected: Decimal | None


def month_to_date(
    hours: Hours,
    now: datetime,
    tz: tzinfo,
    data_start: datetime,
    data_end: datetime,
    rate: BurnRate | None = None,
) -> MonthToDate:
    since = month_start(now, tz)
    total = hours.between(since, data_end)
    projected = None
    if rate is not None:
        local = now.astimezone(tz).date()
        next_month = (local.replace(day=28) + timedelta(days=4)).replace(day=1)
        left = (local_midnight(next_month, tz) - data_end) / timedelta(days=1)
        projected = total + rate.per_day * Decimal(str(max(left, 0.0)))
    return MonthToDate(total, since, data_end, ceil_hour(since) >= data_start, projected)


LIMIT_DURATIONS = ("daily", "weekly", "monthly")
_SLIDING = {"daily": timedelta(days=1), "weekly": timedelta(days=7), "monthly": timedelta(days=30)}


@dataclass(frozen=True)
class LimitWindow:
    start: datetime
    end: datetime
    used: Decimal
    limit: Decimal

    @property
    def percent(self) -> Decimal:
        if self.limit <= 0:
            return Decimal(100)
        return self.used / self.limit * 100

    @property
    def high(self) -> Decimal:
        """Where the window starts to look nearly used up (for a meter's warning colour)."""
        return self.limit * Decimal("0.8")

    @property
    def exceeded(self) -> bool:
        return self.used >= self.limit

    @property
    def left(self) -> Decimal:
        return max(self.limit - self.used, ZERO)


def limit_window_start(duration: str, strategy: str | None, now: datetime, tz: tzinfo) -> datetime:
    """Cloudflare does not document its windows: a ``sliding`` one is taken as the last 24
    hours, 7 or 30 days; a ``fixed`` one (or unknown strategy) as today, this week from Monday,
    or this month, in the reporting zone. Raises ValueError for an unknown duration."""
    if duration not in LIMIT_DURATIONS:
        raise ValueError(f"unknown spending-limit duration {duration!r}")
    if strategy == "sliding":
        return floor_hour(now) - _SLIDING[duration]
    if duration == "daily":
        return local_midnight(now.astimezone(tz).date(), tz)
    if duration == "weekly":
        return week_start(now, tz)
    return month_start(now, tz)


def limit_window(
    hours: Hours,
    limit: Decimal,
    duration: str,
    strategy: str | None,
    now: datetime,
    tz: tzinfo,
    data_end: datetime,
) -> LimitWindow:
    start = limit_window_start(duration, strategy, now, tz)
    return LimitWindow(start, data_end, hours.between(start, data_end), limit)


def describe_interval(every: timedelta) -> str:
    """How often something recurring happens, in round words: "about every 3 days"."""
    hours = every / HOUR
    if hours < 1:
        return "more than once an hour"
    if hours < 1.5:
        return "about every hour"
    if hours < 18:
        return f"about every {round(hours)} hours"
    days = hours / 24
    if days < 1.5:
        return "about once a day"
    if days < 13:
        return f"about every {round(days)} days"
    if days < 56:
        return f"about every {round(days / 7)} weeks"
    if days < 365:
        return f"about every {round(days / 30.4)} months"
    return "less than once a year"
