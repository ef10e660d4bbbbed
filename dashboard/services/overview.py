"""The overview's cards and the "All accounts" table, wired from the shared reads to the
arithmetic of :mod:`dashboard.services.runway`. A card not back by the page's deadline is
pending: it loads itself."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from functools import partial
from typing import Any, Final

from django.conf import settings
from django.utils import timezone

from billing_api import models
from dashboard.infra import clock, upstream
from dashboard.models import AlertRule, RefusedChange
from dashboard.services import alerts, attention, figures, invoices, reads, rules, runway
from dashboard.services.accounts import Account
from dashboard.services.balance import BalanceCard, TopupFailure, card_from_fetched

BANNER: Final = "topup-banner"
BALANCE: Final = "balance-card"
RUNWAY: Final = "runway-card"
SPEND: Final = "spend-card"
LIMIT: Final = "limit-card"
INVOICE: Final = "invoice-card"
ATTENTION: Final = "attention-list"

#: Every partial of the overview (its name is its DOM id), in page order, with its reads.
CARD_READS: Final[dict[str, tuple[str, ...]]] = {
    BANNER: ("balance",),
    # Plus the invoice history, for a reader who may see invoices (ATTENTION_INVOICES).
    ATTENTION: ("balance", "usage"),
    BALANCE: ("balance",),
    RUNWAY: ("balance", "usage"),
    SPEND: ("usage",),
    LIMIT: ("limit", "usage"),
    # The balance says how much of the period's usage the prepaid credit covers.
    INVOICE: ("preview", "balance"),
}
#: The attention list reads open invoices only for a reader who may open the invoices.
ATTENTION_INVOICES: Final = "dashboard.view_invoices"
#: Cards that need a permission beyond view_overview.
CARD_PERMISSIONS: Final = {INVOICE: "dashboard.view_invoices"}
#: Lines of the upcoming invoice shown on its card; the invoices page has them all.
INVOICE_LINES_SHOWN = 3


@dataclass(frozen=True)
class Card[T]:
    """One card: still loading, failed (error, no value), stale (value and error), or fresh."""

    value: T | None = None
    pending: bool = False
    error: str | None = None
    as_of: datetime | None = None

    @property
    def stale(self) -> bool:
        return self.value is not None and self.error is not None

    @property
    def ready(self) -> bool:
        return self.value is not None


def card_from[T](parts: Sequence[upstream.Fetched[Any]], build: Callable[..., T]) -> Card[T]:
    """A card built from the values of its reads: pending if any read is, failed unless every
    one has a value. Its time is the oldest of its reads', since the card is no newer."""
    if any(f.pending for f in parts):
        return Card(pending=True)
    error, as_of = reads.error_and_time(parts)
    if any(f.value is None for f in parts):
        return Card(error=error or "No answer from Cloudflare.", as_of=as_of)
    return Card(build(*(f.value for f in parts)), error=error, as_of=as_of)


# ---------------------------------------------------------------- card values


@dataclass(frozen=True)
class TopupBanner:
    """The page-level warning: auto top-up failed or was stopped. None inside: all is well."""

    failure: TopupFailure | None
    rule: str


@dataclass(frozen=True)
class RunwayInfo:
    balance: Decimal
    week: runway.BurnRate | None
    month: runway.BurnRate | None
    forecast: runway.Runway
    auto_topup: runway.AutoTopup | None
    #: Why auto top-up does not count for the forecast, when a rule exists but cannot fire.
    auto_topup_problem: str | None
    now: datetime
    burn_week: figures.Figure | None = None
    burn_month: figures.Figure | None = None

    @property
    def topup_frequency(self) -> str | None:
        every = self.forecast.topup_every
        return runway.describe_interval(every) if every else None


@dataclass(frozen=True)
class SpendInfo:
    month: runway.MonthToDate
    total: figures.Figure
    forecast: figures.Figure | None


@dataclass(frozen=True)
class LimitInfo:
    enabled: bool
    amount: Decimal | None
    duration: str | None
    strategy: str | None
    window: runway.LimitWindow | None
    #: Set when how much is used cannot be worked out (unknown window, usage unreadable).
    usage_problem: str | None


@dataclass(frozen=True)
class InvoiceInfo:
    #: None: Cloudflare says there is no upcoming invoice.
    preview: models.InvoicePreview | None
    lines: tuple[models.InvoiceLine, ...]
    more_lines: int
    #: The period's usage (its lines before credits) and the credits Cloudflare lists on them.
    usage: Decimal = Decimal(0)
    credits: Decimal = Decimal(0)
    #: The prepaid balance now; None when it could not be read (the card shows without it).
    balance: Decimal | None = None

    @property
    def uncovered(self) -> Decimal:
        """Usage the prepaid credit does not cover: what the balance is below zero."""
        return Decimal(0) if self.balance is None or self.balance >= 0 else -self.balance


@dataclass(frozen=True)
class Overview:
    """The cards asked for; the others are None."""

    banner: Card[TopupBanner] | None = None
    balance: Card[BalanceCard] | None = None
    runway: Card[RunwayInfo] | None = None
    spend: Card[SpendInfo] | None = None
    limit: Card[LimitInfo] | None = None
    invoice: Card[InvoiceInfo] | None = None
    attention: Card[tuple[attention.Item, ...]] | None = None
    #: The whole page's banner while the monthly cap holds (``alerts.cap_banner``).
    cap_banner: alerts.CapBanner | None = None
    #: With the limit card: what Cloudflare did with the last attempt to set a limit.
    limit_refusal: RefusedChange | None = None


def allowed_cards(has_perm: Callable[[str], bool]) -> tuple[str, ...]:
    return tuple(
        name
        for name in CARD_READS
        if name not in CARD_PERMISSIONS or has_perm(CARD_PERMISSIONS[name])
    )


def overview(
    account_id: str,
    cards: Iterable[str],
    has_perm: Callable[[str], bool] = lambda _: False,
    *,
    whole_page: bool = False,
) -> Overview:
    """The cards named, from reads gathered in parallel under the page deadline; ``has_perm``
    is the reader's, for what the attention list may read and link to. ``whole_page``: with
    the cap banner, and without waiting for invoices that are not kept."""
    chosen = tuple(cards)
    now = clock.now()
    tz = timezone.get_current_timezone()
    loaders: dict[str, Callable[[], upstream.Fetched[Any]]] = {
        "balance": partial(reads.credit_balance, account_id),
        "usage": partial(reads.recent_usage, account_id, now, tz),
        "limit": partial(reads.spending_limit, account_id),
        "preview": partial(reads.invoice_preview, account_id),
        # The Invoices page's own read, so that one visit of either serves both. It comes in
        # pages, one call after another: unless it is kept, a whole page does not wait for
        # it (the attention list loads itself when it is in).
        "invoices": partial(invoices.invoice_list, account_id, "all", wait=not whole_page),
    }
    needed = {read for card in chosen for read in CARD_READS[card]}
    if ATTENTION in chosen and has_perm(ATTENTION_INVOICES):
        needed.add("invoices")
    got = upstream.gather(
        {name: loaders[name] for name in loaders if name in needed},
        deadline=settings.BILLING_PAGE_DEADLINE,
    )
    page = build_overview(chosen, got, now, tz)
    # One query for the account's alert rules: the attention list's and the cap banner's.
    alert_rules: list[AlertRule] = []
    if whole_page or ATTENTION in chosen:
        alert_rules = list(AlertRule.objects.filter(account_id=account_id))
    if whole_page:
        page = dataclasses.replace(page, cap_banner=alerts.cap_banner(account_id, alert_rules))
    if LIMIT in chosen:
        refused = rules.refusal(account_id, RefusedChange.Kind.SPENDING_LIMIT)
        page = dataclasses.replace(page, limit_refusal=refused)
    if ATTENTION not in chosen:
        return page
    return dataclasses.replace(
        page, attention=attention_card(account_id, got, page.runway, now, has_perm, alert_rules)
    )


def build_overview(
    cards: tuple[str, ...],
    got: Mapping[str, upstream.Fetched[Any]],
    now: datetime,
    tz: tzinfo,
) -> Overview:
    balance = got.get("balance")
    usage_read = got.get("usage")

    built: dict[str, Any] = {}
    if balance is not None and (BANNER in cards or BALANCE in cards):
        # The banner is the balance card's top-up failure and rule.
        shown = card_from_fetched(balance)
        if BANNER in cards:
            banner = TopupBanner(shown.topup_failure, shown.auto_topup)
            built["banner"] = card_from([balance], lambda _: banner)
        if BALANCE in cards:
            built["balance"] = card_from([balance], lambda _: shown)
    if (RUNWAY in cards or ATTENTION in cards) and balance is not None and usage_read is not None:
        built["runway"] = card_from([balance, usage_read], partial(runway_info, now=now))
    if SPEND in cards and usage_read is not None:
        built["spend"] = card_from([usage_read], partial(spend_info, now=now, tz=tz))
    if LIMIT in cards and "limit" in got and usage_read is not None:
        built["limit"] = limit_card(got["limit"], usage_read, now, tz)
    if INVOICE in cards and "preview" in got:
        # Only the preview makes the card: without the balance it still explains itself.
        known = balance.value if balance is not None else None
        built["invoice"] = card_from([got["preview"]], partial(invoice_info, balance=known))
    return Overview(**built)


def attention_card(
    account_id: str,
    got: Mapping[str, upstream.Fetched[Any]],
    runway_card: Card[RunwayInfo] | None,
    now: datetime,
    has_perm: Callable[[str], bool],
    alert_rules: Sequence[AlertRule],
) -> Card[tuple[attention.Item, ...]]:
    """What needs action, from whatever came back: one read failing drops only its checks."""
    reads_used = [got[name] for name in ("balance", "usage", "invoices") if name in got]
    if any(read.pending for read in reads_used):
        return Card(pending=True)
    forecast = runway_card.value.forecast if runway_card and runway_card.value else None
    history = got["invoices"].value if "invoices" in got else None
    facts = attention.Facts(
        balance=got["balance"].value,
        zero_at=forecast.zero_at if forecast and forecast.kind == "runs-out" else None,
        overdrawn=forecast is not None and forecast.kind == "overdrawn",
        invoices=attention.open_invoices(history.invoices) if history else None,
    )
    error, as_of = reads.error_and_time(reads_used)
    items = attention.items(account_id, facts, now, has_perm, alert_rules)
    return Card(items, error=error, as_of=as_of)


def runway_info(balance: models.CreditBalance, usage: figures.Usage, now: datetime) -> RunwayInfo:
    rule, problem = rules.counted_rule(balance)
    forecast = runway.runway(balance.balance, usage.week, now, rule)
    return RunwayInfo(
        balance.balance,
        usage.week,
        usage.month,
        forecast,
        rule,
        problem,
        now,
        usage.burn_week,
        usage.burn_month,
    )


def spend_info(usage: figures.Usage, now: datetime, tz: tzinfo) -> SpendInfo:
    month = runway.month_to_date(usage.hours, now, tz, usage.start, usage.end, usage.week)
    return SpendInfo(month, figures.month_to_date(month, tz), figures.month_end_forecast(month, tz))


def limit_card(
    limit_read: upstream.Fetched[models.SpendingLimit],
    usage_read: upstream.Fetched[figures.Usage],
    now: datetime,
    tz: tzinfo,
) -> Card[LimitInfo]:
    """The limit shows without usage: only the "used so far" part needs it."""
    read = limit_read.value
    enabled = read is not None and read.enabled and read.config.amount is not None
    if enabled and usage_read.pending:
        return Card(pending=True)

    def build(limit: models.SpendingLimit) -> LimitInfo:
        config = limit.config
        window = problem = None
        if limit.enabled and config.amount is not None:
            duration = (config.duration or "").strip().lower()
            unknown = "How much of the window is used is unknown:"
            if duration not in runway.LIMIT_DURATIONS:
                problem = f"{unknown} Cloudflare names a window we do not know."
            elif usage_read.value is None:
                problem = f"{unknown} {usage_read.error}"
            else:
                hours, end = usage_read.value.hours, usage_read.value.end
                strategy = (config.strategy or "").strip().lower()
                window = runway.limit_window(hours, config.amount, duration, strategy, now, tz, end)
        return LimitInfo(enabled, config.amount, config.duration, config.strategy, window, problem)

    return card_from([limit_read], build)


def invoice_info(
    upcoming: reads.Upcoming, balance: models.CreditBalance | None = None
) -> InvoiceInfo:
    preview = upcoming.preview
    if preview is None:
        return InvoiceInfo(None, (), 0)
    lines = sorted(preview.invoice_lines, key=lambda line: line.amount, reverse=True)
    shown = tuple(lines[:INVOICE_LINES_SHOWN])
    usage = sum((line.amount for line in lines), Decimal(0)) if lines else preview.amount_due
    credits = sum(
        (credit.amount for line in lines for credit in line.pretax_credit_amounts), Decimal(0)
    )
    known = balance.balance if balance is not None else None
    return InvoiceInfo(preview, shown, len(lines) - len(shown), usage, credits, known)


# ---------------------------------------------------------------- all accounts


@dataclass(frozen=True)
class AccountSummary:
    account: Account
    balance: Card[BalanceCard]
    runway: Card[RunwayInfo]
    spend: Card[SpendInfo]
    #: What needs action on the account (not one of the row's figures).
    attention: Card[tuple[attention.Item, ...]] = Card(value=())

    @property
    def _cards(self) -> tuple[Card[Any], ...]:
        return (self.balance, self.runway, self.spend)

    @property
    def pending(self) -> bool:
        return any(card.pending for card in self._cards)

    @property
    def error(self) -> str | None:
        return reads.error_and_time(self._cards)[0]

    @property
    def stale(self) -> bool:
        """Some figures are shown, but not fresh ones."""
        return any(card.stale for card in self._cards)

    @property
    def as_of(self) -> datetime | None:
        return reads.error_and_time(self._cards)[1]


def account_summaries(
    accounts: list[Account], has_perm: Callable[[str], bool] = lambda _: False
) -> list[AccountSummary]:
    """One row per account, every account's reads in parallel under one deadline, with
    what needs attention on each (open invoices only for a reader who may see invoices)."""
    now = clock.now()
    tz = timezone.get_current_timezone()
    names = (
        ("balance", "usage", "invoices") if has_perm(ATTENTION_INVOICES) else ("balance", "usage")
    )
    loaders: dict[str, Callable[[], upstream.Fetched[Any]]] = {}
    for account in accounts:
        loaders[f"{account.id}:balance"] = partial(reads.credit_balance, account.id)
        loaders[f"{account.id}:usage"] = partial(reads.recent_usage, account.id, now, tz)
        if "invoices" in names:
            loaders[f"{account.id}:invoices"] = partial(invoices.invoice_list, account.id, "all")
    got = upstream.gather(loaders, deadline=settings.BILLING_PAGE_DEADLINE)
    # The accounts' alert rules in one query, not one per account.
    alert_rules: dict[str, list[AlertRule]] = {account.id: [] for account in accounts}
    for rule in AlertRule.objects.filter(account_id__in=alert_rules):
        alert_rules[rule.account_id].append(rule)
    rows = []
    for account in accounts:
        mine = {name: got[f"{account.id}:{name}"] for name in names}
        page = build_overview((BALANCE, RUNWAY, SPEND), mine, now, tz)
        assert page.balance is not None and page.runway is not None and page.spend is not None
        rules_here = alert_rules[account.id]
        needs = attention_card(account.id, mine, page.runway, now, has_perm, rules_here)
        rows.append(AccountSummary(account, page.balance, page.runway, page.spend, needs))
    return rows


def shared_spans(rows: Iterable[AccountSummary]) -> dict[str, str]:
    """The spans of the table's burn and month columns, from the first row that has them:
    every account read at the same moment shares them (a newer account's burn may cover
    fewer days; its overview names them)."""
    spans: dict[str, str] = {}
    for row in rows:
        runway_info, spend = row.runway.value, row.spend.value
        if runway_info is not None and runway_info.burn_week is not None:
            spans.setdefault("burn", runway_info.burn_week.label)
        if spend is not None:
            spans.setdefault("mtd", spend.total.label)
    return spans
