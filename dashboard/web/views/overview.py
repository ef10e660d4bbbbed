"""Home (the first account's overview), the overview's cards, and all accounts at a glance."""

from __future__ import annotations

import time

from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from dashboard.services import overview as cards
from dashboard.services.accounts import Account, accounts_for
from dashboard.services.cloudflare_links import ai_gateway_url
from dashboard.web.access import HtmxHttpRequest, account_view


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    accounts = accounts_for(request.user)
    if not accounts or not request.user.has_perm("dashboard.view_overview"):
        return render(request, "dashboard/no_access.html", status=403)
    return redirect("dashboard:overview", account_id=accounts[0].id)


@require_GET
@permission_required("dashboard.view_overview", raise_exception=True)
def all_accounts(request: HttpRequest) -> HttpResponse:
    rows = cards.account_summaries(accounts_for(request.user), request.user.has_perm)
    needs_attention = [row for row in rows if row.attention.value]
    context = {"rows": rows, "needs_attention": needs_attention, "spans": cards.shared_spans(rows)}
    return render(request, "dashboard/all_accounts.html", context)


@require_GET
@vary_on_headers("HX-Request")
@account_view("view_overview")
def overview(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    started = time.perf_counter()
    allowed = cards.allowed_cards(request.user.has_perm)
    # One card alone: ?partial=<name> (no JavaScript needed), or htmx naming its target.
    partial = request.GET.get("partial")
    if partial is None and request.htmx and request.htmx.target:
        partial = request.htmx.target
    if partial is not None:
        if partial not in cards.CARD_READS:
            return HttpResponseBadRequest("Unknown partial")
        if partial not in allowed:
            raise PermissionDenied

    chosen = (partial,) if partial else allowed
    page = cards.overview(account.id, chosen, request.user.has_perm, whole_page=partial is None)
    template = "dashboard/overview.html" + (f"#{partial}" if partial else "")
    context = {
        "account": account,
        "page": page,
        "overview_url": reverse("dashboard:overview", args=[account.id]),
        "invoices_url": reverse("dashboard:invoices", args=[account.id]),
        "cap_banner": page.cap_banner,
        "cloudflare_dashboard_url": ai_gateway_url(account.id),
    }
    response = render(request, template, context)
    # How long the reads and the rendering took, for the browser's tools and the benchmark.
    response["Server-Timing"] = f"overview;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response
