"""The Alerts page: an account's alert rules, what fired and how each delivery went, for
billing admins. Every change is audited; webhook URLs are secrets: only their hosts show."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django.views.decorators.vary import vary_on_headers

from dashboard.models import AlertRule, AuditEvent
from dashboard.services import alert_rules as service
from dashboard.services.accounts import Account
from dashboard.web.access import HtmxHttpRequest, account_view
from dashboard.web.forms import AlertRuleForm

Action = AuditEvent.Action
PAGE = "dashboard/alerts.html"


def _respond(request: HtmxHttpRequest, account: Account, **extra: Any) -> HttpResponse:
    template = f"{PAGE}#alert-rule-form" if request.htmx else PAGE
    return render(
        request, template, {"account": account, **service.page_context(account.id), **extra}
    )


def _save(request: HtmxHttpRequest, account: Account, form: AlertRuleForm) -> HttpResponse | None:
    """Saves a valid form (audited) and redirects; None (invalid: a typo, not recorded)."""
    if not form.is_valid():
        return None
    rule = form.save(commit=False)
    service.save_rule(request.user, account.id, rule)
    messages.success(request, f"Alert saved: {service.describe(rule)}.")
    if request.htmx:
        # A full page after a save: the list and the history change too.
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("dashboard:alerts", args=[account.id])
        return response
    return redirect("dashboard:alerts", account_id=account.id)


@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
@account_view("manage_alerts", audit_action=Action.ALERT_RULE_SET)
def alerts(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """The rules, the history, and a form for a new rule."""
    if request.method == "POST":
        form = AlertRuleForm(request.POST)
        if saved := _save(request, account, form):
            return saved
    else:
        form = AlertRuleForm(initial={"kind": AlertRule.Kind.BALANCE_BELOW, "repeat_hours": 24})
    return _respond(
        request, account, form=form, form_url=reverse("dashboard:alerts", args=[account.id])
    )


@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
@account_view("manage_alerts", audit_action=Action.ALERT_RULE_SET)
def alert_rule(request: HtmxHttpRequest, account: Account, pk: int) -> HttpResponse:
    """One rule's form, to change it."""
    rule = get_object_or_404(AlertRule, pk=pk, account_id=account.id)
    form = AlertRuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and (saved := _save(request, account, form)):
        return saved
    url = reverse("dashboard:alert_rule", args=[account.id, rule.pk])
    return _respond(
        request, account, form=form, form_url=url, editing=rule, switch_to="dashboard:alerts"
    )


@require_http_methods(["GET", "POST"])
@account_view("manage_alerts", audit_action=Action.ALERT_RULE_DELETE)
def alert_rule_delete(request: HtmxHttpRequest, account: Account, pk: int) -> HttpResponse:
    """A confirmation page; its POST deletes the rule (its history goes with it)."""
    rule = get_object_or_404(AlertRule, pk=pk, account_id=account.id)
    condition = service.describe(rule)
    if request.method == "POST":
        service.delete_rule(request.user, rule)
        messages.success(request, f"Alert deleted: {condition}.")
        return redirect("dashboard:alerts", account_id=account.id)
    context = {"confirm_delete": rule, "condition": condition, "switch_to": "dashboard:alerts"}
    return render(
        request, PAGE, {"account": account, **service.page_context(account.id), **context}
    )
