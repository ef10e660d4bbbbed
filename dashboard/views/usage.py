"""The usage page: spend per day or hour as a chart and a table, and its CSV export."""

from __future__ import annotations

import csv
from datetime import date
from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from dashboard import clock
from dashboard.access import Account, HtmxHttpRequest, account_view
from dashboard.forms import UsageFilterForm
from dashboard.services import usage as usage_service


@require_GET
@account_view("view_usage")
def usage(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    form = _form(request)
    report = _report(account, form) if form.is_valid() else None
    template = "dashboard/usage.html"
    # A history restore after a cache miss asks for the whole page, HX-Request or not.
    if request.htmx and not request.htmx.history_restore_request:
        template += "#usage-report"
    context = _context(request, account, form, report)
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


def _query(window: str | None, preset: str, start: date | None, end: date | None) -> str:
    params = {"range": preset}
    if window:
        params["window"] = window
    if preset == "custom" and start and end:
        params |= {"start": start.isoformat(), "end": end.isoformat()}
    return "?" + urlencode(params)


def _context(
    request: HtmxHttpRequest,
    account: Account,
    form: UsageFilterForm,
    report: usage_service.UsageReport | None,
) -> dict[str, Any]:
    # On bad input the links start again from what was valid, so that each of them works.
    data = form.cleaned_data if hasattr(form, "cleaned_data") else {}
    preset: usage_service.Preset = data.get("range") or usage_service.DEFAULT_PRESET
    asked = data.get("window_asked", data.get("window"))
    window = data.get("window") or usage_service.default_window(preset)
    start = end = None
    if report is not None and report.range.preset == "custom":
        start = usage_service.local_date(data["start"], form.zone)
        end = usage_service.local_date(data["end"], form.zone) - usage_service.DAY
    page_url = reverse("usage", args=[account.id])
    context: dict[str, Any] = {
        "account": account,
        "form": form,
        "report": report,
        "zone_name": str(form.zone),
        "max_days": usage_service.MAX_RANGE_DAYS,
        "window_links": [
            (label, page_url + _query(key, preset, start, end), key == window)
            for key, label in usage_service.WINDOWS.items()
        ],
        "preset_links": [
            (label, page_url + _query(asked, key, None, None), key == preset)
            for key, label in usage_service.PRESETS.items()
        ],
        "window": window,
        "self_url": page_url + _query(asked, preset, start, end),
        "custom_start": form.data.get("start") or "",
        "custom_end": form.data.get("end") or "",
    }
    if report is None:
        return context
    if not context["custom_start"] and not context["custom_end"]:
        # Offer the dates shown as the starting point of a custom range.
        first, last = report.plan.start, min(report.plan.end, report.range.end)
        context["custom_start"] = usage_service.local_date(first, form.zone).isoformat()
        context["custom_end"] = usage_service.local_date(
            last - usage_service.HOUR, form.zone
        ).isoformat()
    context |= {
        "range_label": usage_service.range_label(report),
        "rows": [(usage_service.row_label(row, report), row) for row in report.rows],
        "chart": usage_service.chart_data(report),
        "figures": usage_service.summary_figures(report),
    }
    summary = report.summary
    if summary is not None and summary.busiest is not None:
        context["busiest_label"] = usage_service.row_label(summary.busiest, report)
    if request.user.has_perm("dashboard.export_data"):
        context["csv_url"] = reverse("usage_csv", args=[account.id]) + _query(
            window, preset, start, end
        )
    return context
