"""The Alerts page: an account's alert rules, what fired and how each delivery went.

Billing admins only (``manage_alerts``). Adding, changing and deleting a rule is audited
like every write; webhook URLs are secrets, so the page and the audit log show their hosts.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from dashboard import audit
from dashboard.access import Account, HtmxHttpRequest, account_view
from dashboard.forms import AlertRuleForm
from dashboard.models import AlertFiring, AlertRule, AuditEvent
from dashboard.money import format_usd
from dashboard.services import notify

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome
PAGE = "dashboard/alerts.html"
#: Firings shown on the page, newest first.
RECENT_FIRINGS = 20


def describe(rule: AlertRule) -> str:
    """The rule's condition in words: "Balance below $50.00"."""
    if rule.kind == AlertRule.Kind.BALANCE_BELOW and rule.amount is not None:
        return f"Balance below {format_usd(rule.amount)}"
    if rule.kind == AlertRule.Kind.MONTH_TO_DATE_ABOVE and rule.amount is not None:
        return f"Month-to-date spend above {format_usd(rule.amount)}"
    if rule.kind == AlertRule.Kind.RUNWAY_BELOW and rule.days is not None:
        return f"Credit runs out within {rule.days} day{'s' if rule.days != 1 else ''}"
    if rule.kind == AlertRule.Kind.SPEND_SPIKE and rule.factor is not None:
        return (
            f"Last 24 hours above {rule.factor.normalize()}× the burn per day over the "
            "last 7 complete days"
        )
    if rule.kind == AlertRule.Kind.AUTO_TOPUP_CAP and rule.amount is not None:
        return f"Automatic top-ups this month reach {format_usd(rule.amount)}: turn auto top-up off"
    if rule.kind == AlertRule.Kind.AUTO_TOPUP_FAILED:
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


def _context(account: Account, **extra: Any) -> dict[str, Any]:
    rules = list(AlertRule.objects.filter(account_id=account.id))
    firings = list(
        AlertFiring.objects.filter(rule__account_id=account.id)
        .select_related("rule")
        .prefetch_related("deliveries__tries")[:RECENT_FIRINGS]
    )
    return {
        "account": account,
        "rules": [
            {
                "rule": rule,
                "condition": describe(rule),
                "webhooks": [notify.shown_url(url) for url in rule.webhook_list()],
                "edit_url": reverse("alert_rule", args=[account.id, rule.pk]),
                "delete_url": reverse("alert_rule_delete", args=[account.id, rule.pk]),
            }
            for rule in rules
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
        "page_url": reverse("alerts", args=[account.id]),
        "max_attempts": notify.MAX_ATTEMPTS,
        **extra,
    }


def _respond(request: HtmxHttpRequest, context: dict[str, Any]) -> HttpResponse:
    template = f"{PAGE}#alert-rule-form" if request.htmx else PAGE
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _save(
    request: HtmxHttpRequest, account: Account, form: AlertRuleForm, before: dict[str, Any] | None
) -> HttpResponse | None:
    """Saves a valid form (audited) and redirects; None (invalid: a typo, not recorded)."""
    if not form.is_valid():
        return None
    rule = form.save(commit=False)
    rule.account_id = account.id
    if rule.pk is None:
        rule.created_by = request.user.get_username()
    rule.save()
    audit.record(
        request.user,
        account.id,
        Action.ALERT_RULE_SET,
        Outcome.ACCEPTED,
        before=before,
        after=snapshot(rule),
    )
    messages.success(request, f"Alert saved: {describe(rule)}.")
    response: HttpResponse = redirect("alerts", account_id=account.id)
    if request.htmx:
        # A full page after a save: the list and the history change too.
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("alerts", args=[account.id])
    return response


@require_http_methods(["GET", "POST"])
@account_view("manage_alerts", audit_action=Action.ALERT_RULE_SET)
def alerts(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """The rules, the history, and a form for a new rule."""
    if request.method == "POST":
        form = AlertRuleForm(request.POST)
        saved = _save(request, account, form, None)
        if saved is not None:
            return saved
    else:
        form = AlertRuleForm(initial={"kind": AlertRule.Kind.BALANCE_BELOW, "repeat_hours": 24})
    return _respond(
        request, _context(account, form=form, form_url=reverse("alerts", args=[account.id]))
    )


def _rule_or_404(account: Account, pk: int) -> AlertRule:
    try:
        return AlertRule.objects.get(pk=pk, account_id=account.id)
    except AlertRule.DoesNotExist:
        raise Http404("No such alert") from None


@require_http_methods(["GET", "POST"])
@account_view("manage_alerts", audit_action=Action.ALERT_RULE_SET)
def alert_rule(request: HtmxHttpRequest, account: Account, pk: int) -> HttpResponse:
    """One rule's form, to change it."""
    rule = _rule_or_404(account, pk)
    before = snapshot(rule)
    form = AlertRuleForm(request.POST or None, instance=rule)
    if request.method == "POST":
        saved = _save(request, account, form, before)
        if saved is not None:
            return saved
    url = reverse("alert_rule", args=[account.id, rule.pk])
    context = _context(account, form=form, form_url=url, editing=rule, switch_to="alerts")
    return _respond(request, context)


@require_http_methods(["GET", "POST"])
@account_view("manage_alerts", audit_action=Action.ALERT_RULE_DELETE)
def alert_rule_delete(request: HtmxHttpRequest, account: Account, pk: int) -> HttpResponse:
    """A confirmation page; its POST deletes the rule (its history goes with it)."""
    rule = _rule_or_404(account, pk)
    if request.method == "POST":
        before = snapshot(rule)
        rule.delete()
        audit.record(
            request.user, account.id, Action.ALERT_RULE_DELETE, Outcome.ACCEPTED, before=before
        )
        messages.success(request, f"Alert deleted: {before['condition']}.")
        return redirect("alerts", account_id=account.id)
    return render(
        request,
        PAGE,
        _context(account, confirm_delete=rule, condition=describe(rule), switch_to="alerts"),
    )
