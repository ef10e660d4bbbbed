"""The two standing rules, auto top-up and the account-wide spending limit: their reads for
the pages and their four writes. A write is audited whatever happens, remembers a 403 per
account (:class:`RefusedChange`) until a later write succeeds, and drops the reads it changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.utils import timezone

from billing_api import errors, models
from billing_api.client import BillingClient
from dashboard.infra import billing, clock
from dashboard.models import AuditEvent, RefusedChange
from dashboard.services import audit, reads, runway
from dashboard.services.money import format_usd

Kind = RefusedChange.Kind
Action = AuditEvent.Action

SPEND_LIMITS_DOCS = "https://developers.cloudflare.com/ai-gateway/features/spend-limits/"

#: The words for a limit's window, by strategy and duration.
WINDOW_WORDS = {
    ("fixed", "daily"): "today",
    ("fixed", "weekly"): "this week",
    ("fixed", "monthly"): "this month",
    ("sliding", "daily"): "in the last 24 hours",
    ("sliding", "weekly"): "in the last 7 days",
    ("sliding", "monthly"): "in the last 30 days",
}
PERIOD_WORDS = {"daily": "a day", "weekly": "a week", "monthly": "a month"}


def refusal(account_id: str, kind: RefusedChange.Kind) -> RefusedChange | None:
    return RefusedChange.objects.filter(account_id=account_id, kind=kind).first()


@dataclass(frozen=True)
class Spend:
    """The last 30 days of hourly spend (the overview's read, so the cache is shared)."""

    hours: runway.Hours
    end: datetime
    week: runway.BurnRate | None
    now: datetime


def recent_spend(account_id: str) -> tuple[Spend | None, str | None]:
    """The spend the previews use, or why it cannot be read."""
    now = clock.now()
    fetched = reads.recent_usage(account_id, now, timezone.get_current_timezone())
    if fetched.value is None:
        return None, fetched.error or "Cloudflare did not answer in time."
    usage = fetched.value
    return Spend(usage.hours, usage.end, usage.week, now), None


def rule_of(balance: models.CreditBalance | None) -> runway.AutoTopup | None:
    """The auto top-up rule Cloudflare holds (working or stopped), None when none is set."""
    config = balance.topup_config if balance is not None else None
    if config is None or not config.is_set or config.amount is None or config.threshold is None:
        return None
    return runway.AutoTopup(config.threshold, config.amount)


def counted_rule(balance: models.CreditBalance) -> tuple[runway.AutoTopup | None, str | None]:
    """The rule a forecast may count on, or why it may not."""
    rule = rule_of(balance)
    if rule is not None and balance.topup_config.has_failed:
        return None, "Auto top-up is not counted: its last attempt failed."
    if rule is not None and not balance.has_default_payment_method:
        return None, "Auto top-up is not counted: there is no card on file to charge."
    return rule, None


def describe_rule(threshold: Decimal, amount: Decimal) -> str:
    return f"When the balance falls below {format_usd(threshold)}, add {format_usd(amount)}."


def auto_topup_preview(
    balance: models.CreditBalance | None,
    spend: Spend | None,
    threshold: Decimal,
    amount: Decimal,
) -> str | None:
    """What the rule means at the 7-day burn rate, in one or two sentences."""
    if balance is None or spend is None:
        return None
    if spend.week is None:
        return "No forecast yet: it needs at least one complete day of usage."
    rule = runway.AutoTopup(threshold, amount)
    forecast = runway.runway(balance.balance, spend.week, spend.now, rule)
    rate = f"At the 7-day spend of {format_usd(spend.week.per_day)} a day"
    if forecast.kind != "funded":
        return f"{rate}, the balance does not run down, so this rule would not fire."
    every = forecast.topup_every
    parts = [rate if every is None else f"{rate}, this fires {runway.describe_interval(every)}"]
    if forecast.topup_due:
        parts.append(
            f"the balance ({format_usd(balance.balance)}) is already below "
            f"{format_usd(threshold)}, so a top-up would be due at once"
        )
    elif forecast.next_topup_at is not None:
        local = timezone.localtime(forecast.next_topup_at)
        parts.append(f"next top-up around {local:%a} {local.day} {local:%b}")
    else:
        parts.append("no top-up is expected for more than a year")
    return "; ".join(parts) + "."


def describe_limit(amount: Decimal | None, duration: str | None, strategy: str | None) -> str:
    """ "$400.00 a month, fixed window" (Cloudflare's own words for values we do not know)."""
    money = format_usd(amount) if amount is not None else "no amount"
    period = PERIOD_WORDS.get((duration or "").lower(), duration or "")
    kind = (strategy or "").lower()
    kind = {"fixed": "fixed window", "sliding": "sliding window"}.get(kind, kind)
    return f"{money} {period}".strip() + (f", {kind}" if kind else "")


@dataclass(frozen=True)
class Impact:
    """Spend already in the window of a proposed limit, and whether it blocks traffic now."""

    spent: Decimal
    window: str
    blocks_now: bool


def limit_impact(spend: Spend | None, amount: Decimal, duration: str, strategy: str) -> Impact:
    if spend is None:
        return Impact(Decimal(0), WINDOW_WORDS[(strategy, duration)], False)
    tz = timezone.get_current_timezone()
    window = runway.limit_window(spend.hours, amount, duration, strategy, spend.now, tz, spend.end)
    return Impact(window.used, WINDOW_WORDS[(strategy, duration)], window.exceeded)


def limit_page(account_id: str) -> dict[str, Any]:
    """The spending-limit page's reads: the limit Cloudflare holds (``current``, None when
    off) and how much of its window is spent (``used``)."""
    fetched = reads.spending_limit(account_id)
    limit = fetched.value
    spend, spend_error = recent_spend(account_id)
    current = used = words = None
    if limit is not None and limit.enabled and limit.config.amount is not None:
        current, amount = limit.config, limit.config.amount
        words = describe_limit(amount, current.duration, current.strategy)
        window = ((current.strategy or "fixed").lower(), (current.duration or "").lower())
        if spend is not None and window in WINDOW_WORDS:
            used = limit_impact(spend, amount, window[1], window[0])
    return {
        "limit_read": fetched,
        "current": current,
        "current_words": words,
        "used": used,
        "spend": spend,
        "spend_error": spend_error,
        "docs_url": SPEND_LIMITS_DOCS,
    }


@dataclass(frozen=True)
class Outcome:
    ok: bool
    #: What to tell the user when not ok.
    message: str = ""
    #: Cloudflare answered 403: the refusal is remembered for the account.
    refused: bool = False


UNCONFIRMED = "Cloudflare did not confirm the change; check before trying again."


def _explain(error: errors.BillingError) -> str:
    if isinstance(error, errors.BillingConnectionError):
        # A POST is never retried: it may or may not have reached Cloudflare.
        return f"Cloudflare’s billing service did not answer in time. {UNCONFIRMED}"
    if isinstance(error, errors.BillingResponseError):
        return f"{error.user_message} {UNCONFIRMED}"
    if isinstance(error, errors.BillingStatusError):
        said = "; ".join(e.message for e in error.errors)
        text = error.user_message + (f" Cloudflare said: “{said}”" if said else "")
        if error.request_id:
            text += f" (request id {error.request_id})"
        return text
    return error.user_message


def _write(
    user: User | AnonymousUser,
    account_id: str,
    action: AuditEvent.Action,
    call: Callable[[BillingClient], object],
    *,
    before: object,
    after: object,
    actor: str = "",
) -> Outcome:
    topup = action in (Action.AUTO_TOPUP_SET, Action.AUTO_TOPUP_DELETE)
    kind = Kind.AUTO_TOPUP if topup else Kind.SPENDING_LIMIT
    dropped = "credit-balance" if topup else "spending-limit"
    try:
        call(billing.client_for(account_id))
    except errors.BillingError as error:
        if isinstance(error, errors.BillingStatusError) and error.status_code is None:
            # Refused by the client before sending: the form should have caught it.
            audit.record(
                user, account_id, action, AuditEvent.Outcome.INVALID, error=error, actor=actor
            )
            return Outcome(False, str(error))
        outcome = audit.outcome_of(error)
        audit.record(
            user, account_id, action, outcome, before=before, after=after, error=error, actor=actor
        )
        reads.forget(account_id, dropped)
        if isinstance(error, errors.PermissionDeniedError):
            said = "; ".join(e.message for e in error.errors) or str(error)
            RefusedChange.objects.update_or_create(
                account_id=account_id,
                kind=kind,
                defaults={
                    "refused_at": timezone.now(),
                    "refused_by": actor or user.get_username(),
                    "message": said,
                    "upstream_status": error.status_code,
                },
            )
            return Outcome(False, said, refused=True)
        return Outcome(False, _explain(error))
    accepted = AuditEvent.Outcome.ACCEPTED
    audit.record(user, account_id, action, accepted, before=before, after=after, actor=actor)
    # Cloudflare still removes a limit it refuses to set: removing says nothing of setting.
    if action != Action.SPENDING_LIMIT_DELETE:
        RefusedChange.objects.filter(account_id=account_id, kind=kind).delete()
    reads.forget(account_id, dropped)
    return Outcome(True)


def _rule_json(rule: tuple[Decimal, Decimal] | None) -> dict[str, Decimal] | None:
    return None if rule is None else {"threshold": rule[0], "amount": rule[1]}


def save_auto_topup(
    user: User | AnonymousUser,
    account_id: str,
    data: Mapping[str, Any],
    before: tuple[Decimal, Decimal] | None,
) -> Outcome:
    threshold, amount = data["threshold"], data["amount"]
    return _write(
        user,
        account_id,
        Action.AUTO_TOPUP_SET,
        lambda client: client.set_topup_config(amount, threshold),
        before=_rule_json(before),
        after=_rule_json((threshold, amount)),
    )


def delete_auto_topup(
    user: User | AnonymousUser,
    account_id: str,
    before: tuple[Decimal, Decimal] | None,
    *,
    actor: str = "",
) -> Outcome:
    return _write(
        user,
        account_id,
        Action.AUTO_TOPUP_DELETE,
        lambda client: client.delete_topup_config(),
        before=_rule_json(before),
        after=None,
        actor=actor,
    )


def _limit_json(config: models.SpendingLimitConfig | None) -> dict[str, object] | None:
    if config is None:
        return None
    return {"amount": config.amount, "duration": config.duration, "strategy": config.strategy}


def save_spending_limit(
    user: User | AnonymousUser,
    account_id: str,
    data: Mapping[str, Any],
    before: models.SpendingLimitConfig | None,
) -> Outcome:
    amount, duration, strategy = data["amount"], data["duration"], data["strategy"]
    return _write(
        user,
        account_id,
        Action.SPENDING_LIMIT_SET,
        lambda client: client.set_spending_limit(amount, duration, strategy),
        before=_limit_json(before),
        after={"amount": amount, "duration": duration, "strategy": strategy},
    )


def delete_spending_limit(
    user: User | AnonymousUser, account_id: str, before: models.SpendingLimitConfig | None
) -> Outcome:
    return _write(
        user,
        account_id,
        Action.SPENDING_LIMIT_DELETE,
        lambda client: client.delete_spending_limit(),
        before=_limit_json(before),
        after=None,
    )


def record_invalid(
    user: User | AnonymousUser,
    account_id: str,
    action: AuditEvent.Action,
    errors_by_field: dict[str, list[str]],
) -> None:
    # The messages are sentences that name their field: no form machinery (``__all__``).
    detail = " ".join(message for messages in errors_by_field.values() for message in messages)
    audit.record(user, account_id, action, AuditEvent.Outcome.INVALID, detail=detail)
