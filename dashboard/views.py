from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from dashboard import services

# Partials of the overview that may be asked for alone (?partial=<name> or an HTMX request).
OVERVIEW_PARTIALS = frozenset({"balance-card"})


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@dataclass(frozen=True)
class Account:
    id: str
    name: str


def get_account_or_404(account_id: str) -> Account:
    name = settings.BILLING_ACCOUNTS.get(account_id)
    if name is None:
        raise Http404("No such account")
    return Account(account_id, name)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("overview", account_id=settings.BILLING_DEFAULT_ACCOUNT)


@require_GET
def overview(request: HtmxHttpRequest, account_id: str) -> HttpResponse:
    account = get_account_or_404(account_id)
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
