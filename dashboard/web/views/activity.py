"""The activity page: the account's audit log, filtered and paged, and its CSV export."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import permission_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from dashboard.services import activity as service
from dashboard.services.accounts import Account
from dashboard.web.access import HtmxHttpRequest, account_view
from dashboard.web.exports import csv_response, not_exported
from dashboard.web.forms import ActivityFilterForm, error_text

TABLE = "activity-table"


@require_GET
@vary_on_headers("HX-Request")
@account_view("view_activity")
def activity(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    form = _form(request, account)
    context: dict[str, Any] = {"account": account, "form": form, "zone_name": str(form.zone)}
    if form.is_valid():
        filters: service.Filters = form.cleaned_data["filters"]
        try:
            page = service.page_of(service.events(account.id, filters), form.cleaned_data["page"])
        except service.PageError as err:
            form.add_error("page", str(err))
        else:
            context |= {
                "page": page,
                "rows": service.rows(page.object_list),
                "links": service.links(page, filters),
                "previous_query": filters.query(page.number - 1) if page.has_previous() else "",
                "next_query": filters.query(page.number + 1) if page.has_next() else "",
                "filtered": filters != service.Filters(),
            }
            if request.user.has_perm("dashboard.export_data"):
                csv_url = reverse("dashboard:activity_csv", args=[account.id]) + filters.query()
                context["csv_url"] = csv_url
                context["csv_too_big"] = page.paginator.count > service.CSV_MAX_ROWS
                context["csv_max"] = service.CSV_MAX_ROWS
    template = "dashboard/activity.html"
    # A history restore after a cache miss asks for the whole page, HX-Request or not.
    if request.htmx and not request.htmx.history_restore_request:
        template += f"#{TABLE}"
    # Bad input answers 400 with the form and its errors, as a page or as the fragment.
    return render(request, template, context, status=400 if form.errors else 200)


@require_GET
@account_view("view_activity")
@permission_required("dashboard.export_data", raise_exception=True)
def activity_csv(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """Every event the page's filters select (all pages), up to ``CSV_MAX_ROWS``."""
    form = _form(request, account)
    if not form.is_valid():
        return not_exported(400, error_text(form))
    found = service.events(account.id, form.cleaned_data["filters"])
    count = found.count()
    if count > service.CSV_MAX_ROWS:
        # Never a truncated file: it would look complete in a spreadsheet.
        return not_exported(
            400,
            f"{count} events match, and an export holds at most {service.CSV_MAX_ROWS}. "
            "Narrow the dates or filters and try again.",
        )
    # Bounded by the cap above, so one response body (the rows are read in chunks).
    filename = service.csv_filename(account.id, timezone.localdate())
    return csv_response(filename, service.csv_rows(found, form.zone))


def _form(request: HtmxHttpRequest, account: Account) -> ActivityFilterForm:
    return ActivityFilterForm(
        request.GET,
        users=service.usernames(account.id),
        zone=timezone.get_current_timezone(),
    )
