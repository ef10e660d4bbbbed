"""The activity page: the account's audit log, filtered and paged, and its CSV export."""

from __future__ import annotations

import csv
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.paginator import Page
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from dashboard.models import AuditEvent
from dashboard.services import activity as service
from dashboard.services.accounts import Account
from dashboard.web.access import HtmxHttpRequest, account_view
from dashboard.web.forms import ActivityFilterForm

TABLE = "activity-table"


@require_GET
@account_view("view_activity")
def activity(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    form = _form(request, account)
    context: dict[str, Any] = {"account": account, "form": form, "zone_name": str(form.zone)}
    if form.is_valid():
        filters: service.Filters = form.cleaned_data["filters"]
        found = service.events(account.id, filters)
        try:
            page = service.page_of(found, form.cleaned_data["page"])
        except service.PageError as err:
            form.add_error("page", str(err))
        else:
            context |= _table(request, account, filters, page)
    template = "dashboard/activity.html"
    # A history restore after a cache miss asks for the whole page, HX-Request or not.
    if request.htmx and not request.htmx.history_restore_request:
        template += f"#{TABLE}"
    # Bad input answers 400 with the form and its errors, as a page or as the fragment.
    response = render(request, template, context, status=400 if form.errors else 200)
    # The same URL answers a full page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_GET
@account_view("view_activity")
def activity_csv(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """Every event the page's filters select (all pages), up to ``CSV_MAX_ROWS``."""
    # account_view checks one permission; the export needs the export one as well.
    if not request.user.has_perm("dashboard.export_data"):
        raise PermissionDenied
    form = _form(request, account)
    if not form.is_valid():
        problems = [str(e) for errors in form.errors.values() for e in errors]
        return _text(400, "The export was not made: " + " ".join(problems))
    found = service.events(account.id, form.cleaned_data["filters"])
    count = found.count()
    if count > service.CSV_MAX_ROWS:
        # Never a truncated file: it would look complete in a spreadsheet.
        return _text(
            400,
            f"The export was not made: {count} events match, and an export holds at most "
            f"{service.CSV_MAX_ROWS}. Narrow the dates or filters and try again.",
        )
    # Bounded by the cap above, so one response body; the rows are read from the database
    # in chunks all the same.
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = service.csv_filename(account.id, timezone.localdate())
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    csv.writer(response).writerows(service.csv_rows(found, form.zone))
    return response


def _form(request: HtmxHttpRequest, account: Account) -> ActivityFilterForm:
    return ActivityFilterForm(
        request.GET,
        users=service.usernames(account.id),
        zone=timezone.get_current_timezone(),
    )


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _table(
    request: HtmxHttpRequest,
    account: Account,
    filters: service.Filters,
    page: Page[AuditEvent],
) -> dict[str, Any]:
    page_url = reverse("dashboard:activity", args=[account.id])
    context: dict[str, Any] = {
        "page": page,
        "rows": service.rows(page.object_list),
        "links": service.links(page, filters),
        "previous_query": filters.query(page.number - 1) if page.has_previous() else "",
        "next_query": filters.query(page.number + 1) if page.has_next() else "",
        "filtered": filters != service.Filters(),
        "reset_url": page_url,
    }
    if request.user.has_perm("dashboard.export_data"):
        count = page.paginator.count
        context["csv_url"] = reverse("dashboard:activity_csv", args=[account.id]) + filters.query()
        context["csv_too_big"] = count > service.CSV_MAX_ROWS
        context["csv_max"] = service.CSV_MAX_ROWS
    return context
