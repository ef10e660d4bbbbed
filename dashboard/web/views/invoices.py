"""The invoices page: the invoice table (filtered, paged) and the upcoming invoice."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from dashboard.services import invoices as service
from dashboard.services import reads
from dashboard.services.accounts import Account
from dashboard.web.access import HtmxHttpRequest, account_view
from dashboard.web.forms import InvoiceFilterForm

TABLE = "invoice-table"
UPCOMING = "upcoming-invoice"
# Partials of the page that may be asked for alone (?partial=<name> or an HTMX request).
PARTIALS = frozenset({TABLE, UPCOMING})


@require_GET
@vary_on_headers("HX-Request")
@account_view("view_invoices")
def invoices(request: HtmxHttpRequest, account: Account) -> HttpResponse:
    partial = request.GET.get("partial")
    if partial is None and request.htmx and not request.htmx.history_restore_request:
        # The partial's name is the DOM id htmx targets.
        partial = request.htmx.target or TABLE
    if partial is not None and partial not in PARTIALS:
        return HttpResponseBadRequest("Unknown partial")
    template = "dashboard/invoices.html" + (f"#{partial}" if partial else "")
    if partial == UPCOMING:
        card = service.upcoming_card(reads.invoice_preview(account.id))
        return render(request, template, {"account": account, "upcoming": card})
    form = InvoiceFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else None
    page = service.invoices_page(
        account.id,
        filters["type"] if filters else None,
        filters["page"] if filters else 1,
        with_upcoming=partial is None,
        # A full page waits for Cloudflare only so long; a late section then loads itself.
        deadline=settings.BILLING_PAGE_DEADLINE if partial is None else None,
    )
    if page.table is not None and page.table.page_error:
        form.add_error("page", page.table.page_error)
    context = {
        "account": account,
        "form": form,
        "table": page.table,
        "upcoming": page.upcoming,
        "pdf_hosts": settings.INVOICE_PDF_HOSTS,
    }
    return render(request, template, context, status=400 if form.errors else 200)
