"""The weekly digest, by email, from Monday 08:00 local: per account, last week's spend against
the week before, the runway, top-ups and invoices (with the Finance permissions). ``week`` moves
on by a conditional update before sending, so of several workers one sends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse
from django.utils import timezone

from billing_api.models import Invoice
from dashboard.infra import clock
from dashboard.models import DigestSubscription
from dashboard.services import alerts, figures, notify, reads, runway, usage
from dashboard.services.accounts import Account, accounts_for
from dashboard.services.invoices import made_here

logger = logging.getLogger(__name__)

#: Who may ask for the digest, and get it: whoever may see an account's overview.
PERMISSION = "dashboard.view_overview"
#: The digest goes out from this local time on Mondays.
SEND_FROM = time(8, 0)


@dataclass(frozen=True)
class AccountWeek:
    account: Account
    #: Spend of the week, and of the week before (None: not read).
    spent: Decimal | None
    spent_before: Decimal | None
    runway: str
    week: figures.Span
    burn: figures.Figure | None
    #: None when the user may not see them: (when, amount, how) per paid top-up; the count
    #: of the other invoices and what they took.
    topups: list[tuple[datetime, Decimal, str]] | None
    invoices: tuple[int, Decimal] | None
    problems: tuple[str, ...] = ()

    @property
    def week_label(self) -> str:
        return figures.span_label(self.week)

    @property
    def usage_path(self) -> str:
        """The Usage page with the week as its custom range (path and query, no host), so the
        digest's total can be checked."""
        query = usage.query("day", "custom", self.week.first_day, self.week.last_day)
        return reverse("dashboard:usage", args=[self.account.id]) + query

    @property
    def change(self) -> str:
        if self.spent is None or self.spent_before is None:
            return ""
        if self.spent_before == 0:
            return "" if self.spent == 0 else "up from nothing"
        ratio = (self.spent - self.spent_before) / self.spent_before * 100
        if abs(ratio) < Decimal("0.5"):
            return "the same as the week before"
        word = "up" if ratio > 0 else "down"
        return f"{word} {abs(ratio):.0f}% on the week before"


@dataclass(frozen=True)
class Digest:
    user: User
    week_start: datetime
    week_end: datetime
    accounts: list[AccountWeek]


def build(user: User, now: datetime) -> Digest:
    """The digest of the week that ended last Sunday night, for ``user``."""
    tz = timezone.get_current_timezone()
    end = runway.week_start(now, tz)  # this Monday, local midnight
    start = runway.week_start(end - timedelta(days=1), tz)
    before = runway.week_start(start - timedelta(days=1), tz)
    week = figures.Span(start, end, True, tz)
    weeks = [_account_week(user, account, week, before, now) for account in accounts_for(user)]
    return Digest(user, start, end, weeks)


def _account_week(
    user: User, account: Account, week: figures.Span, before: datetime, now: datetime
) -> AccountWeek:
    """``before``: the start of the week before ``week``."""
    start, end, tz = week.start, week.end, week.zone
    problems: list[str] = []
    usage = reads.recent_usage(account.id, now, tz)
    balance = reads.credit_balance(account.id)
    spent = spent_before = burn = None
    runway_words = "not known (Cloudflare did not answer)"
    if usage.ok and usage.value is not None:
        hours = usage.value.hours
        spent = hours.between(start, end)
        spent_before = hours.between(before, start)
        burn = usage.value.burn_week
        if balance.ok and balance.value is not None:
            reading = alerts.reading_of(balance.value, usage.value, now, tz)
            runway_words = _runway_words(reading)
    else:
        problems.append(f"usage: {usage.error or 'not read'}")
    topups: list[tuple[datetime, Decimal, str]] | None = None
    invoices: tuple[int, Decimal] | None = None
    may_topups = user.has_perm("dashboard.view_topups")
    may_invoices = user.has_perm("dashboard.view_invoices")
    if may_topups or may_invoices:
        # Each top-up, one-off or automatic, is an invoice at Cloudflare.
        issued, problem = alerts.invoices_between(account.id, "all", start, end)
        if issued is None:
            problems.append(problem)
        else:
            # A top-up whose invoice was never paid (open, void...) added no money.
            paid = [i for i in issued if i.created and alerts.paid(i)]
            if may_topups:
                topups = _topups(account.id, paid)
            if may_invoices:
                # Each invoice counted once: a paid top-up's invoice is the top-up listed.
                others = [i for i in issued if i not in paid] if may_topups else issued
                invoices = (len(others), sum((alerts.paid(i) for i in others), Decimal(0)))
    return AccountWeek(
        account, spent, spent_before, runway_words, week, burn, topups, invoices, tuple(problems)
    )


def _topups(account_id: str, paid: list[Invoice]) -> list[tuple[datetime, Decimal, str]]:
    ours = made_here(account_id)
    return sorted(
        (i.created, alerts.paid(i), _how(i.invoice_origin, ours.get(i.id or "")))
        for i in paid
        if i.created
    )


def _how(origin: str | None, username: str | None) -> str:
    if origin == "auto":
        return "automatic"
    return f"one-off, by {username} on the dashboard" if username else "one-off"


def _runway_words(reading: alerts.Reading) -> str:
    if not reading.runway_known:
        return "no forecast yet (not a full day of usage)"
    if reading.runway_days is None:
        if reading.auto_topup_problem == "":
            return "refilled by auto top-up"
        return "not running out at the 7-day burn rate"
    if reading.runway_days <= 0:
        return "the balance is used up"
    return f"about {reading.runway_days:.0f} days at {reading.burn_text}"


def message(digest: Digest, to: str) -> EmailMultiAlternatives:
    last_day = digest.week_end - timedelta(days=1)
    context = {"digest": digest, "url": settings.DASHBOARD_URL, "last_day": last_day}
    subject = f"Your week: {digest.week_start:%-d %b}–{last_day:%-d %b}"
    return notify.email(subject, "dashboard/email/digest", context, to)


def why_not_sent(user: User) -> str:
    """Why ``user`` gets no digest now ("" when they get one), checked at each send as a page
    is at each view."""
    if not user.is_active:
        return "deactivated"
    if not user.has_perm(PERMISSION):
        return "no permission"
    if not accounts_for(user):
        return "no account granted"
    if not user.email:
        return "no email address"
    return ""


def send_due(now: datetime | None = None) -> int:
    """Sends this week's digest to every subscriber who has not had it; how many were sent."""
    now = now or clock.now()
    local = timezone.localtime(now, timezone.get_current_timezone())
    if local.weekday() == 0 and local.time() < SEND_FROM:
        return 0
    monday = local.date() - timedelta(days=local.weekday())
    sent = 0
    for subscription in DigestSubscription.objects.select_related("user").exclude(week=monday):
        previous = subscription.week
        row = DigestSubscription.objects.filter(pk=subscription.pk)
        if not row.filter(week=previous).update(week=monday):
            continue  # another worker took it
        user = subscription.user
        if why := why_not_sent(user):
            # Kept, and this week skipped: it resumes once the role, grant or address is back.
            logger.info("digest not sent", extra={"user": user.pk, "why": why})
            continue
        try:
            message(build(user, now), user.email).send()
        except Exception as err:  # an email backend's errors have no common base class
            logger.warning("digest not sent", extra={"user": user.pk}, exc_info=True)
            row.update(week=previous, last_error=type(err).__name__)
            continue
        row.update(last_sent_at=now, last_error="")
        sent += 1
    return sent


def subscription(user: User) -> DigestSubscription | None:
    return DigestSubscription.objects.filter(user=user).first()


def set_wanted(user: User, wanted: bool) -> None:
    """Asks for the digest, to the user's own address, or stops it."""
    if wanted:
        DigestSubscription.objects.get_or_create(user=user)
    else:
        DigestSubscription.objects.filter(user=user).delete()
