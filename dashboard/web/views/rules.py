"""The auto top-up rule and the spending limit: one path for both (show, check as you type,
confirm, save, delete); a :class:`Rule` holds what differs. Every POST is audited."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django.views.decorators.vary import vary_on_headers

from dashboard.models import AuditEvent, RefusedChange
from dashboard.services import alerts, reads, rules
from dashboard.services.accounts import Account
from dashboard.services.balance import card_from_fetched
from dashboard.services.cloudflare_links import ai_gateway_url
from dashboard.web.access import HtmxHttpRequest, account_view
from dashboard.web.forms import AutoTopupForm, SpendingLimitForm, errors_of

Action = AuditEvent.Action
Kind = RefusedChange.Kind
AnyUser = User | AnonymousUser


@dataclass(frozen=True)
class Rule:
    #: The URL name, and the template's (``dashboard/<name>.html``, partials ``<id>-form``...).
    name: str
    kind: RefusedChange.Kind
    action: AuditEvent.Action  # setting it, as audited
    #: The rule's inputs: what "Try again" keeps of a refused attempt.
    fields: tuple[str, ...]
    #: The page's figures for an account; ``current`` is the rule Cloudflare holds.
    read: Callable[[str], dict[str, Any]]
    #: ``(context, data, initial)``: the form, bound when ``data`` is given.
    form: Callable[[dict[str, Any], Any, dict[str, Any]], forms.Form]
    #: The form's initial values for the current rule (None: none set).
    initial: Callable[[Any], dict[str, Any]]
    save: Callable[[AnyUser, str, Mapping[str, Any], Any], rules.Outcome]
    saved: Callable[[Mapping[str, Any]], str]
    delete: Callable[[AnyUser, str, Any], rules.Outcome]
    deleted: str
    #: Inputs checked as they are typed (``intent=validate``), answered with ``<id>-feedback``.
    live: bool = False

    @property
    def page(self) -> str:
        return f"dashboard/{self.name}.html"

    @property
    def id(self) -> str:
        return self.name.replace("_", "-")


def _context(rule: Rule, account: Account, **extra: Any) -> dict[str, Any]:
    return {
        "account": account,
        **rule.read(account.id),
        "refusal": rules.refusal(account.id, rule.kind),
        "page_url": reverse(f"dashboard:{rule.name}", args=[account.id]),
        "delete_url": reverse(f"dashboard:{rule.name}_delete", args=[account.id]),
        "dashboard_url": ai_gateway_url(account.id),
        "form_id": f"{rule.id}-form",
        "rule_fields": rule.fields,
        **extra,
    }


def _respond(request: HtmxHttpRequest, rule: Rule, context: dict[str, Any]) -> HttpResponse:
    """The page, or for htmx the form's partial plus the summary out of band."""
    if not request.htmx:
        return render(request, rule.page, context)
    body = render_to_string(f"{rule.page}#{rule.id}-form", context, request)
    body += render_to_string(f"{rule.page}#{rule.id}-summary", context | {"oob": True}, request)
    return HttpResponse(body)


def _edit(request: HtmxHttpRequest, account: Account, rule: Rule) -> HttpResponse:
    context = _context(rule, account)
    post = request.POST
    intent = post.get("intent", "save") if request.method == "POST" else "show"
    # After a refusal the form opens again only when someone chooses to try again; the
    # refusal is still remembered (and shown) until Cloudflare accepts the change.
    context["retrying"] = intent == "retry" or post.get("retrying") == "1"
    initial = rule.initial(context["current"])
    if intent == "retry":
        initial |= {name: post[name] for name in rule.fields if post.get(name)}
    form = rule.form(context, post if intent not in ("show", "retry") else None, initial)
    context["form"] = form
    if intent == "validate" and rule.live:
        return render(request, f"{rule.page}#{rule.id}-feedback", context)
    if intent != "save":
        return _respond(request, rule, context)
    if not form.is_valid():
        # A typo is not an attempt; a rule refused after its box was ticked is one.
        if "confirm" in form.fields and post.get("confirm"):
            rules.record_invalid(request.user, account.id, rule.action, errors_of(form))
        return _respond(request, rule, context)
    outcome = rule.save(request.user, account.id, form.cleaned_data, context["current"])
    if not outcome.ok:
        context.update(
            error=outcome.message,
            refused=outcome.refused,
            refusal=rules.refusal(account.id, rule.kind),
            retrying=context["retrying"] and not outcome.refused,
        )
        return _respond(request, rule, context)
    saved = rule.saved(form.cleaned_data)
    if not request.htmx:
        messages.success(request, saved)
        return redirect(f"dashboard:{rule.name}", account_id=account.id)
    context = _context(rule, account, saved=saved)
    context["form"] = rule.form(context, None, rule.initial(context["current"]))
    return _respond(request, rule, context)


def _delete(request: HtmxHttpRequest, account: Account, rule: Rule) -> HttpResponse:
    """A confirmation page; its POST removes the rule."""
    context = _context(rule, account, confirm_delete=True)
    if request.method == "POST":
        outcome = rule.delete(request.user, account.id, context["current"])
        if outcome.ok:
            messages.success(request, rule.deleted)
            return redirect(f"dashboard:{rule.name}", account_id=account.id)
        context.update(
            error=outcome.message,
            refused=outcome.refused,
            refusal=rules.refusal(account.id, rule.kind),
        )
    return render(request, rule.page, context)


def _auto_topup_read(account_id: str) -> dict[str, Any]:
    fetched = reads.credit_balance(account_id)
    return {
        "balance_read": fetched,
        "card": card_from_fetched(fetched),
        "current": rules.rule_of(fetched.value),
        "cap_banner": alerts.cap_banner(account_id),
    }


def _auto_topup_form(context: dict[str, Any], data: Any, initial: dict[str, Any]) -> forms.Form:
    account_id = context["account"].id
    limits = reads.topup_limits(account_id).value

    def preview_of(threshold: Decimal, amount: Decimal) -> str | None:
        spend, _ = rules.recent_spend(account_id)
        return rules.auto_topup_preview(context["balance_read"].value, spend, threshold, amount)

    form = AutoTopupForm(
        data,
        initial=initial,
        # Cloudflare's own largest top-up for the account, when it says.
        max_amount=limits.maximum if limits is not None else None,
        preview_of=preview_of,
    )
    # Each input is checked as it is typed: the form's feedback comes back, nothing is saved.
    for name in ("threshold", "amount"):
        form.fields[name].widget.attrs.update(
            {
                "hx-post": context["page_url"],
                "hx-vals": '{"intent": "validate"}',
                "hx-trigger": "keyup changed delay:400ms, change",
                "hx-target": "#auto-topup-feedback",
                "hx-swap": "outerHTML",
                # Queue, not replace: replacing aborts the check still out, which htmx
                # reports as a console error when someone types quickly.
                "hx-sync": "closest form:queue last",
            }
        )
    return form


def _auto_topup_initial(current: tuple[Decimal, Decimal] | None) -> dict[str, Any]:
    # When nothing is set yet: Cloudflare's minimums, doubled.
    threshold, amount = current or (Decimal("10.00"), Decimal("20.00"))
    return {"threshold": threshold, "amount": amount}


AUTO_TOPUP = Rule(
    name="auto_topup",
    kind=Kind.AUTO_TOPUP,
    action=Action.AUTO_TOPUP_SET,
    fields=("threshold", "amount"),
    read=_auto_topup_read,
    form=_auto_topup_form,
    initial=_auto_topup_initial,
    save=rules.save_auto_topup,
    saved=lambda data: (
        "Auto top-up rule saved. " + rules.describe_rule(data["threshold"], data["amount"])
    ),
    delete=rules.delete_auto_topup,
    deleted="Auto top-up is off. The balance will not be refilled.",
    live=True,
)


@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
@account_view("change_auto_topup", audit_action=Action.AUTO_TOPUP_SET)
def auto_topup(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    return _edit(request, account, AUTO_TOPUP)


@require_http_methods(["GET", "POST"])
@account_view("change_auto_topup", audit_action=Action.AUTO_TOPUP_DELETE)
def auto_topup_delete(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    return _delete(request, account, AUTO_TOPUP)


def _limit_initial(current: Any) -> dict[str, Any]:
    if current is None:
        return {"duration": "monthly", "strategy": "fixed"}
    return {
        "amount": current.amount,
        "duration": (current.duration or "monthly").lower(),
        "strategy": (current.strategy or "fixed").lower(),
    }


SPENDING_LIMIT = Rule(
    name="spending_limit",
    kind=Kind.SPENDING_LIMIT,
    action=Action.SPENDING_LIMIT_SET,
    fields=("amount", "duration", "strategy"),
    read=rules.limit_page,
    form=lambda context, data, initial: SpendingLimitForm(
        data, initial=initial, impact_of=partial(rules.limit_impact, context["spend"])
    ),
    initial=_limit_initial,
    save=rules.save_spending_limit,
    saved=lambda data: (
        "Spending limit set: "
        + rules.describe_limit(data["amount"], data["duration"], data["strategy"])
        + "."
    ),
    delete=rules.delete_spending_limit,
    deleted="The spending limit is removed.",
)


@require_http_methods(["GET", "POST"])
@vary_on_headers("HX-Request")
@account_view("change_spending_limit", audit_action=Action.SPENDING_LIMIT_SET)
def spending_limit(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    return _edit(request, account, SPENDING_LIMIT)


@require_http_methods(["GET", "POST"])
@account_view("change_spending_limit", audit_action=Action.SPENDING_LIMIT_DELETE)
def spending_limit_delete(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    return _delete(request, account, SPENDING_LIMIT)
