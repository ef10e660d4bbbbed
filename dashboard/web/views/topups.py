"""One-off top-ups: the page, the two-step form, status polling, and "Check again" (an unknown
outcome is looked for, never sent again). The confirmation carries a token binding user,
account, idempotency key and amount: without it nothing is charged."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from dashboard.models import Topup
from dashboard.services import audit, balance_card
from dashboard.services import topups as service
from dashboard.services.accounts import Account
from dashboard.services.cloudflare_links import ai_gateway_url
from dashboard.web.access import HtmxHttpRequest, account_view
from dashboard.web.forms import TopupForm, error_text

TEMPLATE = "dashboard/topups.html"
HISTORY = "topup-history"


@require_GET
@account_view("view_topups")
def topups(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    page = request.GET.get("page", "1")
    # Unknown top-ups a minute old are looked for in the invoices (once a minute at most).
    service.reconcile_due(request.user, account.id)
    current = request.GET.get("topup", "")
    topup = service.shown(account.id, int(current) if current.isdigit() else None)
    # First: seeing it complete refreshes the balance and history read below.
    after = _after(account, topup) if topup is not None else {}
    context = _context(request, account, page=int(page) if page.isdigit() else 1) | after
    history_only = request.htmx and request.htmx.target == HISTORY
    return _render(request, [HISTORY] if history_only else [], context)


@account_view("create_topup", audit_action=audit.Action.TOPUP)
@require_POST
def topup_create(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    form = TopupForm(request.POST, limits=service.limits(account.id))
    confirming = "confirm" in request.POST and "edit" not in request.POST
    key = request.POST.get("idempotency_key", "")
    earlier = Topup.objects.filter(account_id=account.id, idempotency_key=key).first()
    if earlier is not None:
        # This form was used already (double click, back button, another tab): show that.
        return _done(request, account, service.Created(earlier, sent=False))
    if not form.is_valid() or "edit" in request.POST:
        if confirming:  # so not an edit: the form was invalid
            audit.record(
                request.user,
                account.id,
                audit.Action.TOPUP,
                audit.Outcome.INVALID,
                before={"amount": request.POST.get("amount", "")[:32]},
                detail=error_text(form, "; "),
            )
        return _form(request, account, form, step="form")
    data = form.cleaned_data
    amount, key, token = data["amount"], data["idempotency_key"], data["confirmation"]
    if not (confirming and service.confirmed(request.user, account.id, key, amount, token)):
        # A confirm without the confirmation step's token is shown that step: nothing is
        # charged that the person was not shown, with the card, on this very form.
        return _form(request, account, form, step="confirm")
    created = service.create(request.user, account.id, amount, key)
    return _done(request, account, created)


@require_GET
@account_view("view_topups")
def topup_status(request: HtmxHttpRequest, account: Account, pk: int) -> HttpResponse:
    topup = get_object_or_404(Topup, pk=pk, account_id=account.id)
    if not request.htmx:
        return redirect(_page_url(account, topup))
    after = _after(account, topup)  # first: a completion refreshes the balance read next
    context = _context(request, account, with_form=False) | after
    oob = [HISTORY, "balance-summary"] if context["progress"].just_completed else []
    return _render(request, ["topup-status", *oob], context)


@account_view("create_topup", audit_action=audit.Action.TOPUP)
@require_POST
def topup_check(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """Look for an unknown top-up's charge in the invoices now. Nothing is sent again."""
    pk = request.POST.get("topup", "")
    if not pk.isdigit():
        raise Http404("No such top-up.")
    topup = get_object_or_404(Topup, pk=int(pk), account_id=account.id)
    service.reconcile(request.user, topup)
    if not request.htmx:
        return redirect(_page_url(account, topup))
    after = _after(account, topup)  # first: a completion refreshes the balance read next
    context = _context(request, account, with_form=False) | after
    oob = [HISTORY, "balance-summary"] if topup.status == Topup.Status.COMPLETED else [HISTORY]
    return _render(request, ["topup-status", *oob], context)


def _context(
    request: HtmxHttpRequest, account: Account, *, page: int = 1, with_form: bool = True
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "account": account,
        "history": service.history(account.id, page),
        "balance": balance_card(account.id),
        "dashboard_url": ai_gateway_url(account.id),
        "quick_picks": service.QUICK_PICKS,
        "step": "form",
    }
    if with_form and request.user.has_perm("dashboard.create_topup"):
        limits = service.limits(account.id)
        context["limits"] = limits
        context["form"] = TopupForm(limits=limits, initial={"idempotency_key": service.new_key()})
    return context


def _after(account: Account, topup: Topup, *, sent: bool = True) -> dict[str, Any]:
    """What the page shows about a top-up just asked for: its status, polled while open."""
    context: dict[str, Any] = {
        "progress": service.progress(topup),
        "repeated": not sent,
        # What a check of the last minute said (found, several, none, could not be made).
        "check_message": service.last_check(topup),
    }
    if topup.status in (Topup.Status.FAILED, Topup.Status.UNKNOWN):
        # The form keeps the amount (with a new key: a retry is a new top-up).
        limits = service.limits(account.id)
        context["form"] = TopupForm(
            limits=limits,
            initial={"amount": topup.amount, "idempotency_key": service.new_key()},
        )
    return context


def _form(
    request: HtmxHttpRequest, account: Account, form: TopupForm, *, step: str
) -> HttpResponse:
    context = _context(request, account) | {"form": form, "step": step}
    if "idempotency_key" in form.errors:
        # A broken key cannot be kept; the person keeps the amount and gets a new key.
        context["fresh_key"] = service.new_key()
    if step == "confirm":
        context["card"] = service.card_on_file(account.id)
        data = form.cleaned_data
        context["confirmation"] = service.confirmation(
            request.user, account.id, data["idempotency_key"], data["amount"]
        )
    return _render(request, ["topup-form"] if request.htmx else [], context)


def _done(request: HtmxHttpRequest, account: Account, created: service.Created) -> HttpResponse:
    if not request.htmx:
        return redirect(_page_url(account, created.topup))
    after = _after(account, created.topup, sent=created.sent)
    context = _context(request, account) | after
    return _render(request, ["topup-form", HISTORY], context)


def _page_url(account: Account, topup: Topup) -> str:
    return f"{reverse('dashboard:topups', args=[account.id])}?topup={topup.pk}"


def _render(request: HtmxHttpRequest, partials: list[str], context: dict[str, Any]) -> HttpResponse:
    """The full page, or the first partial with the others as out-of-band swaps."""
    if not partials:
        html = render_to_string(TEMPLATE, context, request)
    else:
        first, *oob = partials
        html = render_to_string(f"{TEMPLATE}#{first}", context, request)
        for name in oob:
            html += render_to_string(f"{TEMPLATE}#{name}", context | {"oob": True}, request)
    response = HttpResponse(html)
    # The same URL answers a full page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response
