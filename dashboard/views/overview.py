from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from dashboard import services
from dashboard.access import Account, HtmxHttpRequest, account_view, accounts_for

# Partials of the overview that may be asked for alone (?partial=<name> or an HTMX request).
OVERVIEW_PARTIALS = frozenset({"balance-card"})


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    accounts = accounts_for(request.user)
    if not accounts or not request.user.has_perm("dashboard.view_overview"):
        return render(request, "dashboard/no_access.html", status=403)
    return redirect("overview", account_id=accounts[0].id)


@require_GET
@permission_required("dashboard.view_overview", raise_exception=True)
def all_accounts(request: HttpRequest) -> HttpResponse:
    accounts = accounts_for(request.user)
    rows = services.account_rows(accounts)
    return render(request, "dashboard/all_accounts.html", {"rows": rows})


@require_GET
@account_view("view_overview")
def overview(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    partial = request.GET.get("partial")
    if partial is None and request.htmx:
        # The partial's name is the DOM id htmx targets.
        partial = request.htmx.target or "balance-card"
    if partial is not None and partial not in OVERVIEW_PARTIALS:
        return HttpResponseBadRequest("Unknown partial")
    card = services.balance_card(account.id)
    template = "dashboard/overview.html"
    if partial:
        template += f"#{partial}"
    response = render(request, template, {"account": account, "card": card})
    # The same URL answers a full page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response
