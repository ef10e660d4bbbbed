"""The usage page: spend per day or hour as a chart and a table, and its CSV export."""

from __future__ import annotations

import csv

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from dashboard.infra import clock
from dashboard.services import usage as usage_service
from dashboard.services.accounts import Account
from dashboard.web.access import HtmxHttpRequest, account_view
from dashboard.web.forms import UsageFilterForm


@require_GET
@account_view("view_usage")
def usage(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    form = _form(request)
    report = _report(account, form) if form.is_valid() else None
    template = "dashboard/usage.html"
    # A history restore after a cache miss asks for the whole page, HX-Request or not.
    if request.htmx and not request.htmx.history_restore_request:
        template += "#usage-report"
    context = usage_service.page_context(
        account.id,
        getattr(form, "cleaned_data", {}),
        form.data,
        form.zone,
        report,
        can_export=request.user.has_perm("dashboard.export_data"),
    )
    context |= {"account": account, "form": form}
    # Bad input answers 400 with the form and its errors, as a page or as the fragment.
    response = render(request, template, context, status=200 if report else 400)
    # The same URL answers a full page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_GET
@account_view("export_data")
def usage_csv(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """Exactly the rows the page shows for the same query string."""
    form = _form(request)
    if not form.is_valid():
        problems = [str(e) for errors in form.errors.values() for e in errors]
        return _text(400, "The export was not made: " + " ".join(problems))
    report = _report(account, form)
    if not report.complete:
        # Never a partial file: it would look like a complete one in a spreadsheet.
        return _text(503, f"The export was not made: {report.error} Try again in a minute.")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = usage_service.csv_filename(account.id, report)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    csv.writer(response).writerows(usage_service.csv_rows(report))
    return response


def _form(request: HtmxHttpRequest) -> UsageFilterForm:
    return UsageFilterForm(request.GET, now=clock.now(), zone=timezone.get_current_timezone())


def _report(account: Account, form: UsageFilterForm) -> usage_service.UsageReport:
    return usage_service.usage_report(
        account.id,
        form.cleaned_data["window"],
        form.cleaned_data["report_range"],
        zone=form.zone,
        now=form.now,
    )


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
