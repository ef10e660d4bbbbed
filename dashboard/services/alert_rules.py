"""The Alerts page: an account's rules and recent firings, and the writes a Billing admin makes
there (add, change, delete a rule), each audited with webhook URLs shown as their hosts."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.urls import reverse

from dashboard.models import AlertFiring, AlertRule, AuditEvent
from dashboard.services import audit, notify
from dashboard.services.money import format_usd

Kind = AlertRule.Kind
Action = AuditEvent.Action
ACCEPTED = AuditEvent.Outcome.ACCEPTED

#: Firings shown on the page, newest first.
RECENT_FIRINGS = 20


def describe(rule: AlertRule) -> str:
    """The rule's condition in words: "Balance below $50.00"."""
    if rule.kind == Kind.BALANCE_BELOW and rule.amount is not None:
        return f"Balance below {format_usd(rule.amount)}"
    if rule.kind == Kind.MONTH_TO_DATE_ABOVE and rule.amount is not None:
        return f"Month-to-date spend above {format_usd(rule.amount)}"
    if rule.kind == Kind.RUNWAY_BELOW and rule.days is not None:
        return f"Credit runs out within {rule.days} day{'s' if rule.days != 1 else ''}"
    if rule.kind == Kind.SPEND_SPIKE and rule.factor is not None:
        return (
            f"Last 24 hours above {rule.factor.normalize()}× the burn per day over the "
            "last 7 complete days"
        )
    if rule.kind == Kind.AUTO_TOPUP_CAP and rule.amount is not None:
        return f"Automatic top-ups this month reach {format_usd(rule.amount)}: turn auto top-up off"
    if rule.kind == Kind.AUTO_TOPUP_FAILED:
        return "Auto top-up failed or turned off"
    return rule.get_kind_display()


def snapshot(rule: AlertRule) -> dict[str, Any]:
    """What the audit log keeps of a rule: webhook URLs as their hosts only."""
    return {
        "rule": rule.pk,
        "condition": describe(rule),
        "emails": rule.email_list(),
        "webhooks": [notify.shown_url(url) for url in rule.webhook_list()],
        "webhook_format": rule.webhook_format,
        "repeat_hours": rule.repeat_hours,
        "enabled": rule.enabled,
    }


def page_context(account_id: str) -> dict[str, Any]:
    """The account's rules and its latest firings with their deliveries, for the page."""
    firings = (
        AlertFiring.objects.filter(rule__account_id=account_id)
        .select_related("rule")
        .prefetch_related("deliveries__tries")[:RECENT_FIRINGS]
    )
    return {
        "rules": [
            {
                "rule": rule,
                "condition": describe(rule),
                "webhooks": [notify.shown_url(url) for url in rule.webhook_list()],
                "edit_url": reverse("dashboard:alert_rule", args=[account_id, rule.pk]),
                "delete_url": reverse("dashboard:alert_rule_delete", args=[account_id, rule.pk]),
            }
            for rule in AlertRule.objects.filter(account_id=account_id)
        ],
        "firings": [
            {
                "firing": firing,
                "deliveries": [
                    {"delivery": d, "target": notify.shown_target(d)}
                    for d in firing.deliveries.all()
                ],
            }
            for firing in firings
        ],
        "page_url": reverse("dashboard:alerts", args=[account_id]),
        "max_attempts": notify.MAX_ATTEMPTS,
    }


def save_rule(user: User | AnonymousUser, account_id: str, rule: AlertRule) -> None:
    """Saves a new or changed rule (a valid form's, not yet saved) and audits it."""
    before = None
    if rule.pk is not None:
        before = snapshot(AlertRule.objects.get(pk=rule.pk, account_id=account_id))
    else:
        rule.created_by = user.get_username()
    rule.account_id = account_id
    rule.save()
    audit.record(
        user, account_id, Action.ALERT_RULE_SET, ACCEPTED, before=before, after=snapshot(rule)
    )


def delete_rule(user: User | AnonymousUser, rule: AlertRule) -> None:
    """Deletes a rule, its history with it, and audits it."""
    before = snapshot(rule)
    rule.delete()
    audit.record(user, rule.account_id, Action.ALERT_RULE_DELETE, ACCEPTED, before=before)
