"""Alert rules: what a check of an account sees, when each rule fires, and what it says.

A check reads through the overview's cache, and judges fresh figures only. A rule fires when
its condition turns true, again only after ``repeat_hours``, and clears only past a margin
(``HYSTERESIS``), so a balance hovering at its threshold fires once. Of several workers one
fires: a conditional update of the rule, backed by the firing's unique (rule, episode, repeat).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_api import models as api
from dashboard.infra import clock
from dashboard.models import AlertDelivery, AlertFiring, AlertRule
from dashboard.services import figures, notify, reads, rules, runway
from dashboard.services.figures import Usage
from dashboard.services.money import format_usd

logger = logging.getLogger(__name__)

Kind = AlertRule.Kind
#: How far past its threshold a figure must come back for a rule to clear: 10 %.
HYSTERESIS = Decimal("0.10")
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Reading:
    """One account's figures at ``at``; a figure is None when it could not be read fresh."""

    at: datetime
    balance: Decimal | None = None
    #: None: no forecast (no usage yet) or not running out (no spend, or auto top-up).
    runway_days: Decimal | None = None
    runway_known: bool = False
    #: Why auto top-up will not refill the balance ("" when it will); None: unknown.
    auto_topup_problem: str | None = None
    #: The shared figures (:mod:`figures`); ``burn_week`` only over a full week of history.
    last_day: Decimal | None = None
    burn_week: Decimal | None = None
    month_to_date: Decimal | None = None
    #: Each figure's span in words, by its ``figures`` key ("mtd": "over 1–7 Jun…").
    spans: dict[str, str] = field(default_factory=dict)
    #: The burn rate the runway is forecast at, in words ("$216.15 per day over 3–9 Jun…").
    burn_text: str = ""
    #: Paid by automatic top-ups since the 1st (read only for an account with a cap).
    auto_topups_this_month: Decimal | None = None
    #: The auto top-up rule as (threshold, amount), None when off; for the audit log.
    auto_topup_rule: tuple[Decimal, Decimal] | None = None
    problems: tuple[str, ...] = ()


def read_account(
    account_id: str, now: datetime | None = None, *, auto_topups: bool = False
) -> Reading:
    """One account's figures, and with ``auto_topups`` what automatic top-ups paid this month."""
    now = now or clock.now()
    tz = timezone.get_current_timezone()
    balance = reads.credit_balance(account_id)
    usage = reads.recent_usage(account_id, now, tz)
    problems = tuple(
        f"{name}: {read.error or 'not read'}"
        for name, read in (("balance", balance), ("usage", usage))
        if not read.ok
    )
    reading = reading_of(
        balance.value if balance.ok else None, usage.value if usage.ok else None, now, tz, problems
    )
    if not auto_topups:
        return reading
    invoices, problem = invoices_between(account_id, "auto", runway.month_start(now, tz))
    if invoices is None:
        problem = problem.replace("invoices", "auto top-ups", 1)
        return replace(reading, problems=(*reading.problems, problem))
    return replace(reading, auto_topups_this_month=sum(map(paid, invoices), Decimal(0)))


#: At most this many pages of invoices are read back for one period.
MAX_INVOICE_PAGES = 10


def invoices_between(
    account_id: str, type: api.InvoiceType, start: datetime, end: datetime | None = None
) -> tuple[list[api.Invoice] | None, str]:
    """The invoices of ``type`` created in ``[start, end)``, newest first, read page by page
    until one is older than ``start``; (None, why) when Cloudflare did not answer."""
    found: list[api.Invoice] = []
    for page in range(1, MAX_INVOICE_PAGES + 1):
        fetched = reads.invoice_history(account_id, type, page)
        if not fetched.ok or fetched.value is None:
            return None, f"invoices: {fetched.error or 'not read'}"
        older = False
        for invoice in fetched.value.invoices:
            if invoice.created is None or invoice.created < start:
                older = True
            elif end is None or invoice.created < end:
                found.append(invoice)
        if older or not fetched.value.pagination.has_more:
            break
    return found, ""


def paid(invoice: api.Invoice) -> Decimal:
    """Money the invoice took: a draft, open, void or uncollectible invoice moved none, so
    it counts towards no cap or total. Cloudflare's history may leave the status out: then
    ``amount_paid`` alone says what was paid (never ``amount_due``, which was only asked)."""
    if invoice.status not in ("paid", None):
        return Decimal(0)
    return invoice.amount_paid


def reading_of(
    balance: api.CreditBalance | None,
    usage: Usage | None,
    now: datetime,
    tz: tzinfo,
    problems: tuple[str, ...] = (),
) -> Reading:
    values: dict[str, Any] = {}
    if balance is not None:
        values["balance"] = balance.balance
        config = balance.topup_config
        values["auto_topup_rule"] = rules.rule_of(balance)
        if not config.is_set:
            values["auto_topup_problem"] = "Auto top-up is off."
        elif config.has_failed:
            why = config.error or config.disabled_reason or "it failed"
            values["auto_topup_problem"] = f"Auto top-up failed: {why}"
        else:
            values["auto_topup_problem"] = ""
    if usage is not None:
        month = runway.month_to_date(usage.hours, now, tz, usage.start, usage.end)
        shown = [figures.month_to_date(month, tz), figures.last_24h(usage.hours, now, tz)]
        burn = usage.burn_week
        if burn is not None:
            shown.append(burn)
            values["burn_text"] = f"{format_usd(burn.value)} {burn.label}"
            # A spike is judged against a full week only.
            values["burn_week"] = None if usage.week_short else burn.value
        values["month_to_date"], values["last_day"] = shown[0].value, shown[1].value
        values["spans"] = {figure.key: figure.label for figure in shown}
        if balance is not None:
            values["runway_known"], values["runway_days"] = _runway_days(balance, usage, now)
    return Reading(at=now, problems=problems, **values)


def _runway_days(
    balance: api.CreditBalance, usage: Usage, now: datetime
) -> tuple[bool, Decimal | None]:
    forecast = runway.runway(balance.balance, usage.week, now, rules.counted_rule(balance)[0])
    if forecast.kind == "no-rate":
        return False, None
    if forecast.kind == "overdrawn":
        return True, Decimal(0)
    if forecast.kind == "runs-out" and forecast.zero_at is not None:
        return True, Decimal(str(round((forecast.zero_at - now) / DAY, 2)))
    return True, None  # lasts beyond the horizon, does not burn, or auto top-up refills it


State = Literal["true", "clear", "between", "unknown"]


@dataclass(frozen=True)
class Verdict:
    state: State
    #: What was seen, in words ("balance $12.40").
    seen: str
    #: Subject and message when true.
    subject: str = ""
    message: str = ""
    facts: dict[str, str] = field(default_factory=dict)


def _verdict(
    hit: bool, clear: bool, seen: str, facts: dict[str, str], subject: str, message: str
) -> Verdict:
    """True when ``hit``; else clear only back past the margin (``clear``), else between."""
    if hit:
        return Verdict("true", seen, subject, message, facts)
    return Verdict("clear" if clear else "between", seen, facts=facts)


def _unknown(reading: Reading) -> Verdict:
    why = "; ".join(reading.problems) or "not enough history yet"
    return Verdict("unknown", f"Not judged: {why}")


def judge(rule: AlertRule, reading: Reading) -> Verdict:
    kind = rule.kind
    if kind == Kind.BALANCE_BELOW:
        sentence = "The balance is {value}, below the {threshold} this alert watches for."
        return _crossing(reading.balance, rule.amount, "Balance", reading, sentence, below=True)
    if kind == Kind.MONTH_TO_DATE_ABOVE:
        return _crossing(
            reading.month_to_date,
            rule.amount,
            "Month-to-date spend",
            reading,
            "Spend this month so far is {value} ({span}), above the {threshold} this alert "
            "watches for.",
            below=False,
            span=reading.spans.get("mtd", ""),
        )
    if kind == Kind.RUNWAY_BELOW:
        if not reading.runway_known:
            return _unknown(reading)
        days = reading.runway_days
        if days is None:
            return Verdict("clear", "Runway: not running out at the current rate")
        return _crossing(
            days,
            Decimal(rule.days or 0),
            "Runway",
            reading,
            "The credit runs out in {value} {span}, sooner than the {threshold} this alert "
            "watches for.",
            below=True,
            show=_days,
            span=f"at {reading.burn_text or 'the burn rate of the last 7 days'}",
        )
    if kind == Kind.AUTO_TOPUP_FAILED:
        problem = reading.auto_topup_problem
        if problem is None:
            return _unknown(reading)
        if not problem:
            return Verdict("clear", "Auto top-up: on and working")
        return Verdict(
            "true",
            problem,
            subject=problem.rstrip(".").split(":")[0],
            message=f"{problem} The balance will not be refilled automatically until "
            "the auto top-up rule is saved again.",
            facts={"problem": problem},
        )
    if kind == Kind.SPEND_SPIKE:
        return _spike(rule, reading)
    if kind == Kind.AUTO_TOPUP_CAP:
        return _cap(rule, reading)
    raise ValueError(f"unknown alert kind {kind!r}")


def _days(value: Decimal) -> str:
    shown = f"{value:.0f}" if value == value.to_integral_value() else f"{value:.1f}"
    return f"{shown} day{'' if shown == '1' else 's'}"


def _crossing(
    value: Decimal | None,
    threshold: Decimal | None,
    name: str,
    reading: Reading,
    sentence: str,
    *,
    below: bool,
    show: Callable[[Decimal], str] = format_usd,
    span: str = "",
) -> Verdict:
    """True past ``threshold``; clear only ``HYSTERESIS`` back on the other side of it.
    ``span`` names what the value covers ("over 1 Jun 00:00–7 Jun 20:00, UTC")."""
    if value is None or threshold is None:
        return _unknown(reading)
    margin = threshold * (1 + HYSTERESIS) if below else threshold * (1 - HYSTERESIS)
    return _verdict(
        value < threshold if below else value > threshold,
        value >= margin if below else value <= margin,
        f"{name} {show(value)}" + (f" {span}" if span else ""),
        {"value": str(value), "threshold": str(threshold)},
        f"{name} {'below' if below else 'above'} {show(threshold)}",
        sentence.format(value=show(value), threshold=show(threshold), span=span),
    )


def _spike(rule: AlertRule, reading: Reading) -> Verdict:
    last, average, factor = reading.last_day, reading.burn_week, rule.factor
    if last is None or average is None or factor is None:
        return _unknown(reading)
    last_span = reading.spans.get("last-24h", "")
    burn_span = reading.spans.get("burn-7d", "")
    seen = f"Last 24 hours {format_usd(last)} {last_span}; burn {format_usd(average)} {burn_span}"
    facts = {"last_day": str(last), "burn_per_day": str(average), "factor": str(factor)}
    if average <= 0:
        # Nothing spent over the week: any spend is "infinitely" more, no ratio to judge.
        return Verdict("between", seen, facts=facts)
    ratio = last / average
    facts["ratio"] = f"{ratio:.2f}"
    return _verdict(
        ratio > factor,
        ratio <= factor * (1 - HYSTERESIS),
        seen,
        facts,
        f"Spend spike: {ratio:.1f}× the 7-day burn rate",
        f"The last 24 hours ({last_span}) cost {format_usd(last)}, {ratio:.1f} times the burn "
        f"rate of {format_usd(average)} {burn_span}; this alert watches for more than {factor}×.",
    )


def _cap(rule: AlertRule, reading: Reading) -> Verdict:
    paid, cap = reading.auto_topups_this_month, rule.amount
    if paid is None or cap is None:
        return _unknown(reading)
    return _verdict(
        paid >= cap,
        paid <= cap * (1 - HYSTERESIS),
        f"Automatic top-ups this month {format_usd(paid)} of the {format_usd(cap)} cap",
        {"value": str(paid), "threshold": str(cap)},
        f"Monthly cap on automatic top-ups reached ({format_usd(cap)})",
        f"Automatic top-ups this month came to {format_usd(paid)}, reaching the "
        f"{format_usd(cap)} cap.",
    )


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    #: The firing this check made (None: none, or another worker made it).
    fired: AlertFiring | None = None


def check(rule: AlertRule, reading: Reading) -> Outcome:
    verdict = judge(rule, reading)
    now = reading.at
    seen = verdict.seen[:200]
    if verdict.state == "true" and (not rule.active or _repeat_due(rule, now)):
        if not rule.active:
            episode, repeat = rule.episode + 1, 0
        else:
            episode, repeat = rule.episode, rule.firings.filter(episode=rule.episode).count()
        fired = _fire(rule, verdict, now, episode, repeat)
        if fired is not None and rule.kind == Kind.AUTO_TOPUP_CAP:
            enforce_cap(rule, reading, fired)
        return Outcome(verdict, fired)
    elif verdict.state == "clear" and rule.active:
        with transaction.atomic():
            moved = AlertRule.objects.filter(pk=rule.pk, active=True, episode=rule.episode).update(
                active=False, last_cleared_at=now, last_checked_at=now, last_seen=seen
            )
            if moved:
                AlertFiring.objects.filter(rule=rule, episode=rule.episode).update(cleared_at=now)
        return Outcome(verdict)
    AlertRule.objects.filter(pk=rule.pk).update(last_checked_at=now, last_seen=seen)
    return Outcome(verdict)


def _repeat_due(rule: AlertRule, now: datetime) -> bool:
    if not rule.repeat_hours or rule.last_fired_at is None:
        return False
    return now - rule.last_fired_at >= timedelta(hours=rule.repeat_hours)


def _fire(
    rule: AlertRule, verdict: Verdict, now: datetime, episode: int, repeat: int
) -> AlertFiring | None:
    """Records the firing and its deliveries, unless another worker moved the rule first.
    A cap's deliveries wait: :func:`enforce_cap` defers them once its action is in the message."""
    subject = f"{verdict.subject} ({notify.account_name(rule.account_id)})"
    if repeat:
        subject = f"Still: {subject}"
    try:
        with transaction.atomic():
            # Only if the rule is as this worker read it: of two workers, one moves it.
            moved = AlertRule.objects.filter(
                pk=rule.pk,
                active=rule.active,
                episode=rule.episode,
                last_fired_at=rule.last_fired_at,
            ).update(
                active=True,
                episode=episode,
                last_fired_at=now,
                last_checked_at=now,
                last_seen=verdict.seen[:200],
            )
            if not moved:
                return None
            firing = AlertFiring.objects.create(
                rule=rule,
                episode=episode,
                repeat=repeat,
                fired_at=now,
                subject=subject[:200],
                message=verdict.message,
                facts={"kind": rule.kind, "account_id": rule.account_id, **verdict.facts},
            )
            deliveries = [
                AlertDelivery(firing=firing, channel=channel, target=target, next_attempt_at=now)
                for channel, target in recipients(rule)
            ]
            AlertDelivery.objects.bulk_create(deliveries)
            # Deferred in this transaction: a firing is never left unsent.
            if rule.kind != Kind.AUTO_TOPUP_CAP:
                notify.defer(*(delivery.pk for delivery in deliveries))
    except IntegrityError:
        return None  # the same firing was recorded by another worker
    logger.info(
        "alert fired",
        extra={"rule": rule.pk, "kind": rule.kind, "episode": episode, "repeat": repeat},
    )
    return firing


#: Who the audit log names for the cap's change.
CAP_ACTOR = "alerts worker (monthly cap)"


def enforce_cap(rule: AlertRule, reading: Reading, firing: AlertFiring) -> None:
    """The monthly cap was reached: turns auto top-up off upstream (audited), says so in the
    firing's message, and lets its deliveries go. Called once per firing, by the worker that
    recorded it."""
    if reading.auto_topup_rule is None:
        action, said = "already_off", " Auto top-up is already off: nothing more is charged."
    else:
        outcome = rules.delete_auto_topup(
            AnonymousUser(), rule.account_id, reading.auto_topup_rule, actor=CAP_ACTOR
        )
        if outcome.ok:
            action = "turned_off"
            said = (
                " So the dashboard turned auto top-up off (recorded in the activity log): no "
                "more automatic top-ups are charged this month. To restore it: raise or delete "
                "the cap on the Alerts page, then save the auto top-up rule again on the Auto "
                "top-up page (otherwise the next check turns it off again)."
            )
        elif outcome.refused:
            action = "refused"
            said = (
                f" Turning auto top-up off was refused by Cloudflare ({outcome.message}): "
                "turn it off in Cloudflare's dashboard (AI Gateway, billing) to stop further "
                "charges."
            )
        else:
            action = "failed"
            said = (
                f" Turning auto top-up off failed ({outcome.message}); the next reminder tries "
                "again. Turn it off in Cloudflare's dashboard to be sure."
            )
    message = firing.message + said
    facts = {**firing.facts, "action": action}
    AlertFiring.objects.filter(pk=firing.pk).update(message=message, facts=facts)
    pending = AlertDelivery.objects.filter(firing=firing, status=AlertDelivery.Status.PENDING)
    pending.update(next_attempt_at=reading.at)
    notify.defer(*pending.values_list("pk", flat=True))
    firing.message, firing.facts = message, facts
    logger.info("monthly cap reached", extra={"rule": rule.pk, "action": action})


@dataclass(frozen=True)
class CapBanner:
    fired_at: datetime
    cap: Decimal
    action: str
    message: str


def cap_banner(account_id: str, rules: Iterable[AlertRule] | None = None) -> CapBanner | None:
    """While the account's monthly cap holds (this month), what it did, for the pages: the
    firing that turned auto top-up off, else the latest one of the episode. ``rules``: the
    account's, when the caller has read them."""
    if rules is None:
        rules = AlertRule.objects.filter(account_id=account_id, kind=Kind.AUTO_TOPUP_CAP)
    rule = next((r for r in rules if r.kind == Kind.AUTO_TOPUP_CAP and r.active), None)
    if rule is None or rule.amount is None:
        return None
    firings = list(rule.firings.filter(episode=rule.episode).order_by("fired_at", "id"))
    if not firings:
        return None
    shown = next((f for f in firings if f.facts.get("action") == "turned_off"), firings[-1])
    return CapBanner(shown.fired_at, rule.amount, str(shown.facts.get("action", "")), shown.message)


def recipients(rule: AlertRule) -> list[tuple[str, str]]:
    emails = {(AlertDelivery.Channel.EMAIL, address) for address in rule.email_list()}
    return sorted(emails | {(AlertDelivery.Channel.WEBHOOK, url) for url in rule.webhook_list()})


def check_all(now: datetime | None = None) -> list[Outcome]:
    """Checks every enabled rule, reading each account once."""
    now = now or clock.now()
    rules = AlertRule.objects.filter(enabled=True, account_id__in=list(settings.BILLING_ACCOUNTS))
    capped = {rule.account_id for rule in rules if rule.kind == Kind.AUTO_TOPUP_CAP}
    readings = {
        account: read_account(account, now, auto_topups=account in capped)
        for account in dict.fromkeys(rule.account_id for rule in rules)
    }
    return [check(rule, readings[rule.account_id]) for rule in rules]
