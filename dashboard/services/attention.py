"""What needs someone's action on an account, most urgent first, in sentences with links (only
to pages the reader's role may open), from the overview's reads and our own tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.timesince import timesince

from billing_api import models
from dashboard.models import AlertRule, Topup
from dashboard.services.cloudflare_links import ai_gateway_url
from dashboard.services.money import format_usd

#: Runway shorter than this is flagged when the account has no "runway below" alert rule:
#: two weeks leave time to notice, ask for a budget and top up.
DEFAULT_RUNWAY_DAYS: Final = 14
#: Top-ups made here whose outcome is still to be learnt.
UNSETTLED: Final = (Topup.Status.CREATING, Topup.Status.PENDING, Topup.Status.UNKNOWN)
#: Money about to run out or stop being refilled first, then alerts, then paperwork.
ORDER: Final = ("overdrawn", "topup-failed", "no-card", "runway", "alerts", "topup-off",
                "invoices", "topups")  # fmt: skip


@dataclass(frozen=True)
class Item:
    kind: str
    text: str
    #: Where to act, when the reader may open it; ``external`` for Cloudflare's dashboard.
    link_text: str | None = None
    url: str | None = None
    external: bool = False


@dataclass(frozen=True)
class Facts:
    """What the page read; None where it was not read (or not allowed)."""

    balance: models.CreditBalance | None
    #: When the balance reaches zero at the 7-day rate (None: not known, or auto top-up).
    zero_at: datetime | None
    overdrawn: bool
    invoices: tuple[models.Invoice, ...] | None


def items(
    account_id: str,
    facts: Facts,
    now: datetime,
    has_perm: Callable[[str], bool],
    alert_rules: Iterable[AlertRule],
) -> tuple[Item, ...]:
    """``alert_rules``: the account's, for the runway threshold and the firing alerts."""
    links = _Links(account_id, has_perm)
    rules = [rule for rule in alert_rules if rule.enabled]
    found: list[Item] = []
    found += _balance_items(facts, links)
    found += _runway_items(rules, facts, now, links)
    found += _alert_items(rules, links)
    if facts.invoices is not None:
        found += _invoice_items(facts.invoices, now, links)
    if has_perm("dashboard.view_topups"):
        found += _topup_items(account_id, now, links)
    return tuple(sorted(found, key=lambda item: ORDER.index(item.kind)))


def open_invoices(invoices: Iterable[models.Invoice]) -> tuple[models.Invoice, ...]:
    """Invoices with money still owed: open (being collected) or uncollectible."""
    return tuple(
        invoice
        for invoice in invoices
        if invoice.status in ("open", "uncollectible") and invoice.amount_remaining > 0
    )


@dataclass(frozen=True)
class _Links:
    account_id: str
    has_perm: Callable[[str], bool]

    def to(self, name: str, permission: str) -> str | None:
        if not self.has_perm(f"dashboard.{permission}"):
            return None
        return reverse(f"dashboard:{name}", args=[self.account_id])


def _item(kind: str, text: str, link_text: str, url: str | None) -> Item:
    return Item(kind, text, link_text if url else None, url)


def _balance_items(facts: Facts, links: _Links) -> list[Item]:
    balance = facts.balance
    if balance is None:
        return []
    found = []
    config = balance.topup_config
    rule_url = links.to("auto_topup", "change_auto_topup")
    if config.has_failed:
        text = "Auto top-up failed: the balance will not be refilled until it is fixed."
        found.append(_item("topup-failed", text, "Fix the auto top-up rule", rule_url))
    elif not config.is_set:
        text = "Auto top-up is off: the balance is refilled only when someone tops up."
        found.append(_item("topup-off", text, "Set up auto top-up", rule_url))
    if not balance.has_default_payment_method:
        text = "No card is on file: no top-up can be charged, by hand or automatically."
        # Cards are managed in Cloudflare's dashboard, by whoever pays here.
        if links.has_perm("dashboard.create_topup"):
            url = ai_gateway_url(links.account_id)
            found.append(Item("no-card", text, "Add a card in Cloudflare’s dashboard", url, True))
        else:
            found.append(Item("no-card", text))
    return found


def _runway_items(rules: list[AlertRule], facts: Facts, now: datetime, links: _Links) -> list[Item]:
    topup_url = links.to("topup_create", "create_topup")
    if facts.balance is not None and not facts.balance.has_default_payment_method:
        topup_url = None  # no card to charge: the "no card" item says what to do instead
    if facts.overdrawn:
        text = "The balance is at or below zero: usage goes on being billed against it."
        return [_item("overdrawn", text, "Top up", topup_url)]
    if facts.zero_at is None:
        return []
    # Warn under the highest of the enabled runway rules, else the default.
    ruled = [r.days for r in rules if r.kind == AlertRule.Kind.RUNWAY_BELOW and r.days is not None]
    days = max(ruled, default=DEFAULT_RUNWAY_DAYS)
    left = facts.zero_at - now
    if left >= timedelta(days=days):
        return []
    whose = "your runway alert" if ruled else "the default"
    text = f"About {_days(left)} of credit left at the 7-day rate, under {days} days ({whose})."
    return [_item("runway", text, "Top up", topup_url)]


def _days(left: timedelta) -> str:
    days = max(0, round(left / timedelta(days=1)))
    if days == 0:
        return "less than a day"
    return f"{days} day{'s' if days != 1 else ''}"


def _alert_items(rules: list[AlertRule], links: _Links) -> list[Item]:
    firing = [rule for rule in rules if rule.active]
    if not firing:
        return []
    names = "; ".join(
        rule.get_kind_display() + (f" ({rule.last_seen.rstrip('.')})" if rule.last_seen else "")
        for rule in firing
    )
    count = len(firing)
    text = f"{count} alert{'s are' if count != 1 else ' is'} firing: {names}."
    return [_item("alerts", text, "See the alerts", links.to("alerts", "manage_alerts"))]


def _invoice_items(
    invoices: tuple[models.Invoice, ...], now: datetime, links: _Links
) -> list[Item]:
    url = links.to("invoices", "view_invoices")
    found = []
    for invoice in sorted(invoices, key=lambda i: i.created or now):
        status = "unpaid" if invoice.status == "uncollectible" else "open"
        amount = format_usd(invoice.amount_remaining)
        if invoice.created is None:
            text = f"An invoice for {amount} is {status} (Cloudflare gives no date)."
        else:
            issued = dateformat.format(timezone.localtime(invoice.created), "j M Y")
            age = _days(now - invoice.created)
            text = f"An invoice for {amount}, issued {issued}, is {status} for {age}."
        found.append(_item("invoices", text, "See the invoices", url))
    return found


def _topup_items(account_id: str, now: datetime, links: _Links) -> list[Item]:
    url = links.to("topups", "view_topups")
    found = []
    unsettled = Topup.objects.filter(account_id=account_id, status__in=UNSETTLED)
    for topup in unsettled.order_by("created_at"):
        outcome = "of unknown outcome" if topup.status == Topup.Status.UNKNOWN else "pending"
        made = timesince(topup.created_at, now)
        text = (
            f"A {format_usd(Decimal(topup.amount))} top-up by {topup.username}, made {made} "
            f"ago, is {outcome}."
        )
        found.append(_item("topups", text, "See the top-ups", url))
    return found
