"""The auto top-up rule and the spending limit: show, check as you type, save, delete.

Every POST is audited (the decorator records the ones refused for want of permission). A
plain POST that succeeds redirects (PRG); an htmx one gets the form's partial and an
out-of-band update of the summary. An invalid form comes back at 200 with its input.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from billing_api import models
from dashboard.access import Account, HtmxHttpRequest, account_view
from dashboard.cloudflare_links import ai_gateway_url
from dashboard.forms import AutoTopupForm, SpendingLimitForm, errors_of
from dashboard.models import AuditEvent, RefusedChange
from dashboard.services import alerts, reads, rules
from dashboard.services.balance import card_from_fetched

Action = AuditEvent.Action
AUTO_TOPUP_PAGE = "dashboard/auto_topup.html"
LIMIT_PAGE = "dashboard/spending_limit.html"
#: Shown in the form when nothing is set yet: Cloudflare's minimums, doubled.
DEFAULT_RULE = {"threshold": Decimal("10.00"), "amount": Decimal("20.00")}


def _respond(
    request: HtmxHttpRequest, page: str, form_id: str, summary_id: str, context: dict[str, Any]
) -> HttpResponse:
    """The page, or for htmx the form's partial plus the summary out of band."""
    if request.htmx:
        body = render_to_string(f"{page}#{form_id}", context, request)
        body += render_to_string(f"{page}#{summary_id}", {**context, "oob": True}, request)
        response = HttpResponse(body)
    else:
        response = render(request, page, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


# ---------------------------------------------------------------- auto top-up


def _auto_topup_context(account: Account, **extra: Any) -> dict[str, Any]:
    fetched = reads.credit_balance(account.id)
    card = card_from_fetched(fetched)
    return {
        "account": account,
        "balance_read": fetched,
        "card": card,
        "current": rules.rule_of(fetched.value),
        "refusal": rules.refusal(account.id, RefusedChange.Kind.AUTO_TOPUP),
        "page_url": reverse("auto_topup", args=[account.id]),
        "delete_url": reverse("auto_topup_delete", args=[account.id]),
        "dashboard_url": ai_gateway_url(account.id),
        "cap_banner": alerts.cap_banner(account.id),
        **extra,
    }


def _max_topup(account_id: str) -> Decimal | None:
    limits = reads.topup_limits(account_id).value
    return limits.maximum if limits is not None else None


def _live(form: AutoTopupForm, url: str) -> AutoTopupForm:
    """Check each input as it is typed: the form's feedback comes back, nothing is saved."""
    for name in ("threshold", "amount"):
        form.fields[name].widget.attrs.update(
            {
                "hx-post": url,
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


def _preview(context: dict[str, Any], form: AutoTopupForm) -> str | None:
    if not form.is_bound or not form.is_valid():
        return None
    spend, _ = rules.recent_spend(context["account"].id)
    data = form.cleaned_data
    return rules.auto_topup_preview(
        context["balance_read"].value, spend, data["threshold"], data["amount"]
    )


def _initial_rule(current: tuple[Decimal, Decimal] | None) -> dict[str, Decimal]:
    if current is None:
        return dict(DEFAULT_RULE)
    return {"threshold": current[0], "amount": current[1]}


@require_http_methods(["GET", "POST"])
@account_view("change_auto_topup", audit_action=Action.AUTO_TOPUP_SET)
def auto_topup(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    context = _auto_topup_context(account)
    url = context["page_url"]
    max_amount = _max_topup(account.id)
    intent = request.POST.get("intent", "save") if request.method == "POST" else "show"
    context["retrying"] = _retrying(request, intent)
    if intent == "retry":
        form = AutoTopupForm(initial=_initial_from(request.POST, context["current"]))
    elif intent == "show":
        form = AutoTopupForm(initial=_initial_rule(context["current"]), max_amount=max_amount)
    else:
        form = AutoTopupForm(request.POST, max_amount=max_amount)
    context.update(form=_live(form, url), preview=_preview(context, form))
    if intent == "validate":
        response = render(request, f"{AUTO_TOPUP_PAGE}#auto-topup-feedback", context)
        patch_vary_headers(response, ("HX-Request",))
        return response
    if intent != "save":
        return _respond(request, AUTO_TOPUP_PAGE, "auto-topup-form", "auto-topup-summary", context)
    if not form.is_valid():
        # A typo is not an attempt: nothing was confirmed or sent, so nothing is recorded.
        return _respond(request, AUTO_TOPUP_PAGE, "auto-topup-form", "auto-topup-summary", context)
    threshold, amount = form.cleaned_data["threshold"], form.cleaned_data["amount"]
    outcome = rules.save_auto_topup(request.user, account.id, threshold, amount, context["current"])
    if not outcome.ok:
        context.update(
            error=outcome.message,
            refused=outcome.refused,
            refusal=rules.refusal(account.id, RefusedChange.Kind.AUTO_TOPUP),
            retrying=context["retrying"] and not outcome.refused,
        )
        return _respond(request, AUTO_TOPUP_PAGE, "auto-topup-form", "auto-topup-summary", context)
    saved = f"Auto top-up rule saved. {rules.describe_rule(threshold, amount)}"
    if not request.htmx:
        messages.success(request, saved)
        return redirect("auto_topup", account_id=account.id)
    context = _auto_topup_context(account, saved=saved)
    form = AutoTopupForm(initial=_initial_rule(context["current"]), max_amount=max_amount)
    context.update(form=_live(form, url), preview=None)
    return _respond(request, AUTO_TOPUP_PAGE, "auto-topup-form", "auto-topup-summary", context)


def _retrying(request: HtmxHttpRequest, intent: str) -> bool:
    """Someone chose to try again after a refusal: the form opens, the refusal is still
    remembered (and shown) until Cloudflare accepts the change."""
    return intent == "retry" or request.POST.get("retrying") == "1"


def _initial_from(data: Any, current: tuple[Decimal, Decimal] | None) -> dict[str, Any]:
    initial: dict[str, Any] = _initial_rule(current)
    for name in ("threshold", "amount"):
        if data.get(name):
            initial[name] = data[name]
    return initial


@require_http_methods(["GET", "POST"])
@account_view("change_auto_topup", audit_action=Action.AUTO_TOPUP_DELETE)
def auto_topup_delete(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """A confirmation page; its POST turns auto top-up off."""
    context = _auto_topup_context(account, confirm_delete=True)
    if request.method == "POST":
        outcome = rules.delete_auto_topup(request.user, account.id, context["current"])
        if outcome.ok:
            messages.success(request, "Auto top-up is off. The balance will not be refilled.")
            return redirect("auto_topup", account_id=account.id)
        context.update(
            error=outcome.message,
            refused=outcome.refused,
            refusal=rules.refusal(account.id, RefusedChange.Kind.AUTO_TOPUP),
        )
    return render(request, AUTO_TOPUP_PAGE, context)


# ---------------------------------------------------------------- spending limit


def _limit_context(account: Account, **extra: Any) -> dict[str, Any]:
    fetched = reads.spending_limit(account.id)
    current = rules.limit_of(fetched.value)
    spend, spend_error = rules.recent_spend(account.id)
    used = None
    if current is not None and spend is not None:
        duration = (current.duration or "").lower()
        strategy = (current.strategy or "fixed").lower()
        if (strategy, duration) in rules.WINDOW_WORDS and current.amount is not None:
            used = rules.limit_impact(spend, current.amount, duration, strategy)
    return {
        "account": account,
        "limit_read": fetched,
        "current": current,
        "current_words": rules.describe_config(current) if current is not None else None,
        "used": used,
        "spend": spend,
        "spend_error": spend_error,
        "refusal": rules.refusal(account.id, RefusedChange.Kind.SPENDING_LIMIT),
        "page_url": reverse("spending_limit", args=[account.id]),
        "delete_url": reverse("spending_limit_delete", args=[account.id]),
        "dashboard_url": ai_gateway_url(account.id),
        "docs_url": rules.SPEND_LIMITS_DOCS,
        **extra,
    }


def _limit_initial(current: models.SpendingLimitConfig | None) -> dict[str, Any]:
    if current is None:
        return {"duration": "monthly", "strategy": "fixed"}
    return {
        "amount": current.amount,
        "duration": (current.duration or "monthly").lower(),
        "strategy": (current.strategy or "fixed").lower(),
    }


@require_http_methods(["GET", "POST"])
@account_view("change_spending_limit", audit_action=Action.SPENDING_LIMIT_SET)
def spending_limit(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    context = _limit_context(account)
    spend = context["spend"]

    def impact_of(amount: Decimal, duration: str, strategy: str) -> rules.Impact:
        return rules.limit_impact(spend, amount, duration, strategy)

    intent = request.POST.get("intent", "save") if request.method == "POST" else "show"
    context["retrying"] = _retrying(request, intent)
    if intent == "retry":
        initial = _limit_initial(context["current"])
        initial.update(
            {k: request.POST[k] for k in ("amount", "duration", "strategy") if k in request.POST}
        )
        form = SpendingLimitForm(initial=initial)
    elif intent == "show":
        form = SpendingLimitForm(initial=_limit_initial(context["current"]))
    else:
        form = SpendingLimitForm(request.POST, impact_of=impact_of)
    context["form"] = form
    if intent != "save":
        return _respond(
            request, LIMIT_PAGE, "spending-limit-form", "spending-limit-summary", context
        )
    if not form.is_valid():
        if request.POST.get("confirm"):
            # Refused after "I understand" was ticked: an attempt, so it is recorded.
            rules.record_invalid(
                request.user, account.id, Action.SPENDING_LIMIT_SET, errors_of(form), None
            )
        return _respond(
            request, LIMIT_PAGE, "spending-limit-form", "spending-limit-summary", context
        )
    data = form.cleaned_data
    amount = data["amount"]
    duration = cast(models.LimitDuration, data["duration"])
    strategy = cast(models.LimitStrategy, data["strategy"])
    outcome = rules.save_spending_limit(
        request.user, account.id, amount, duration, strategy, context["current"]
    )
    if not outcome.ok:
        context.update(
            error=outcome.message,
            refused=outcome.refused,
            refusal=rules.refusal(account.id, RefusedChange.Kind.SPENDING_LIMIT),
            retrying=context["retrying"] and not outcome.refused,
        )
        return _respond(
            request, LIMIT_PAGE, "spending-limit-form", "spending-limit-summary", context
        )
    saved = f"Spending limit set: {rules.describe_limit(amount, duration, strategy)}."
    if not request.htmx:
        messages.success(request, saved)
        return redirect("spending_limit", account_id=account.id)
    context = _limit_context(account, saved=saved)
    context["form"] = SpendingLimitForm(initial=_limit_initial(context["current"]))
    return _respond(request, LIMIT_PAGE, "spending-limit-form", "spending-limit-summary", context)


@require_http_methods(["GET", "POST"])
@account_view("change_spending_limit", audit_action=Action.SPENDING_LIMIT_DELETE)
def spending_limit_delete(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """A confirmation page; its POST removes the limit."""
    context = _limit_context(account, confirm_delete=True)
    if request.method == "POST":
        outcome = rules.delete_spending_limit(request.user, account.id, context["current"])
        if outcome.ok:
            messages.success(request, "The spending limit is removed.")
            return redirect("spending_limit", account_id=account.id)
        context.update(error=outcome.message, refused=outcome.refused)
    return render(request, LIMIT_PAGE, context)
