"""The usage page: spend per day or hour as a chart and a table, and its CSV export."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from dashboard.infra import clock
from dashboard.services import usage as usage_service
from dashboard.services.accounts import Account
from dashboard.web.access import HtmxHttpRequest, account_view
from dashboard.web.exports import csv_response, not_exported
from dashboard.web.forms import UsageFilterForm, error_text


@require_GET
@vary_on_headers("HX-Request")
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
        form.cleaned_data,
        form.data,
        form.zone,
        report,
        can_export=request.user.has_perm("dashboard.export_data"),
    )
    context |= {"account": account, "form": form}
    # Bad input answers 400 with the form and its errors, as a page or as the fragment.
    return render(request, template, context, status=200 if report else 400)


@require_GET
@account_view("export_data")
def usage_csv(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    """Exactly the rows the page shows for the same query string."""
    form = _form(request)
    if not form.is_valid():
        return not_exported(400, error_text(form))
    report = _report(account, form)
    if not report.complete:
        return not_exported(503, f"{report.error} Try again in a minute.")
    filename = usage_service.csv_filename(account.id, report)
    return csv_response(filename, usage_service.csv_rows(report))


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
