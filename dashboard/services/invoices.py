"""The Invoices page: past invoices paged in the dashboard, and the upcoming invoice. Cloudflare
documents no page parameter for ``invoice-history``: pages are asked for while ``has_more`` says
so, until one does not advance or ``MAX_UPSTREAM_PAGES``; the list is cached per account and
type, paged here, and says when it falls short of ``total_count``."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from itertools import pairwise
from typing import Any, Literal
from urllib.parse import urlencode

from django.conf import settings
from django.utils import dateformat, timezone

from billing_api import errors, models
from billing_api.client import BillingClient
from dashboard.infra import upstream
from dashboard.models import Topup
from dashboard.services import reads
from dashboard.services.money import currency_code, format_money, format_quantity, format_unit_price
from dashboard.services.pdf_links import PdfLink, pdf_link
from dashboard.services.reads import Upcoming

#: The read of the whole history, as the cache names it.
HISTORY = "invoice-history-assembled"
#: Invoices per page of the dashboard's table.
PER_PAGE = 20
#: Upstream pages asked for at most per account and type (each is one call against
#: Cloudflare's 1,200 requests per 5 minutes; the list is then cached).
MAX_UPSTREAM_PAGES = 25

Shortfall = Literal["ignored", "capped", "failed"]

ORIGINS = {"auto": "Auto top-up", "manual": "Manual"}
#: Cloudflare's ``created_by`` when no person made the invoice, in words.
AUTHORS = {"api-token": "through the API", "auto-topup": "automatically"}
STATUSES = {
    "paid": ("Paid", "badge-ok"),
    "open": ("Open", "badge-warning"),
    "void": ("Void", "badge-neutral"),
    "draft": ("Draft", "badge-neutral"),
    "uncollectible": ("Uncollectible", "badge-error"),
}
UNKNOWN_STATUS = ("Unknown", "badge-neutral")


@dataclass(frozen=True)
class InvoiceList:
    """The invoices obtained for one type, newest first as Cloudflare sent them."""

    invoices: tuple[models.Invoice, ...]
    #: What Cloudflare says the full history holds.
    total_count: int
    #: Why fewer than ``total_count`` were obtained (None: all were, or it did not say).
    shortfall: Shortfall | None = None
    #: The failure, in plain words, when a later page failed.
    failure: str | None = None

    @property
    def missing(self) -> int:
        return max(0, self.total_count - len(self.invoices))


def collect_invoices(
    fetch_page: Callable[[int], models.InvoiceHistory], *, max_pages: int = MAX_UPSTREAM_PAGES
) -> InvoiceList:
    """Follow Cloudflare's ``pagination`` from page 1 as far as it really advances; a later
    page's failure keeps what was obtained and says why the list is short (page 1's raises)."""
    answer = fetch_page(1)
    invoices = list(answer.invoices)
    seen = {_identity(invoice) for invoice in invoices}
    total = answer.pagination.total_count
    shortfall: Shortfall | None = None
    failure: str | None = None
    page = 1
    while answer.pagination.has_more:
        if page >= max_pages:
            shortfall = "capped"
            break
        page += 1
        try:
            answer = fetch_page(page)
        except errors.BillingError as err:
            shortfall, failure = "failed", err.user_message
            break
        new = [invoice for invoice in answer.invoices if _identity(invoice) not in seen]
        if answer.pagination.page != page or not new:
            # Cloudflare answered page 1 again (or nothing new): it ignores the parameter.
            shortfall = "ignored"
            break
        invoices.extend(new)
        seen.update(_identity(invoice) for invoice in new)
    if len(invoices) >= total:
        shortfall, failure = None, None
    elif shortfall is None:
        # has_more said no, yet fewer came than total_count promised.
        shortfall = "ignored"
    return InvoiceList(tuple(invoices), total, shortfall, failure)


def _identity(invoice: models.Invoice) -> Hashable:
    return invoice.id if invoice.id else invoice


def invoice_list(
    account_id: str, type: models.InvoiceType, *, wait: bool = True
) -> upstream.Fetched[InvoiceList]:
    def load(client: BillingClient) -> InvoiceList:
        return collect_invoices(partial(client.invoice_history, type))

    return upstream.read(account_id, HISTORY, load, params={"type": type}, wait=wait)


@dataclass(frozen=True)
class InvoiceRow:
    id: str | None
    created: datetime | None
    origin: str
    description: str | None
    #: "by ada", or how it was made when no person made it ("through the API").
    made_by: str | None
    amount_due: str
    amount_paid: str
    amount_remaining: str
    remaining_is_due: bool
    currency: str
    status: str
    status_class: str
    status_sent: str | None
    pdf: PdfLink


def made_by(invoice: models.Invoice, made_here: Mapping[str, str]) -> str | None:
    """Who made it: the person who made the top-up here, else what Cloudflare says, in words."""
    person = made_here.get(invoice.id or "")
    if person:
        return f"by {person}"
    author = (invoice.created_by or "").strip()
    if not author:
        return None
    return AUTHORS.get(author.lower(), f"by {author}")


def made_here(account_id: str) -> dict[str, str]:
    """Who made each of the account's top-ups here, by invoice id: Cloudflare's
    ``payment_intent_id`` is the top-up's Stripe invoice id (see the reference notes)."""
    found = Topup.objects.filter(account_id=account_id).exclude(payment_intent_id="")
    return dict(found.values_list("payment_intent_id", "username"))


def invoice_row(
    invoice: models.Invoice, hosts: Collection[str], people: Mapping[str, str] | None = None
) -> InvoiceRow:
    status_key = (invoice.status or "").strip().lower()
    label, badge = STATUSES.get(status_key, UNKNOWN_STATUS)
    origin_key = (invoice.invoice_origin or "").strip().lower()
    return InvoiceRow(
        id=invoice.id,
        created=invoice.created,
        origin=ORIGINS.get(origin_key, invoice.invoice_origin or "Unknown"),
        description=invoice.description,
        made_by=made_by(invoice, people or {}),
        amount_due=format_money(invoice.amount_due, invoice.currency),
        amount_paid=format_money(invoice.amount_paid, invoice.currency),
        amount_remaining=format_money(invoice.amount_remaining, invoice.currency),
        remaining_is_due=invoice.amount_remaining > 0 and status_key not in ("void", "paid"),
        currency=currency_code(invoice.currency),
        status=label,
        status_class=badge,
        # What Cloudflare sent, when it is not one of the statuses we know.
        status_sent=invoice.status if status_key not in STATUSES else None,
        pdf=pdf_link(invoice.invoice_pdf, hosts),
    )


@dataclass(frozen=True, kw_only=True)
class Section:
    """What a section of the page says of its read: failed, still out, or when it was made."""

    error: str | None = None
    as_of: datetime | None = None
    pending: bool = False
    loaded: bool = False

    @property
    def as_of_text(self) -> str | None:
        return describe_as_of(self.as_of)

    @property
    def stale(self) -> bool:
        return self.loaded and self.error is not None


def section_of(fetched: upstream.Fetched[Any]) -> dict[str, Any]:
    return {
        "error": fetched.error,
        "as_of": fetched.as_of,
        "pending": fetched.pending,
        "loaded": fetched.value is not None,
    }


@dataclass(frozen=True)
class InvoiceTable(Section):
    """One page of the invoice table, or why there is none."""

    type: models.InvoiceType
    page: int = 1
    rows: tuple[InvoiceRow, ...] = ()
    num_pages: int = 1
    count: int = 0
    first_index: int = 0
    last_index: int = 0
    page_links: tuple[int | None, ...] = ()
    #: "Cloudflare returned 40 of 57 invoices." and why, when the list is short.
    shortfall: str | None = None
    #: Set when the page asked for is past the end.
    page_error: str | None = None

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.num_pages

    @property
    def withheld_pdfs(self) -> bool:
        return any(row.pdf.withheld for row in self.rows)

    @property
    def query(self) -> str:
        return query_string(self.type, self.page)

    @property
    def previous_query(self) -> str:
        return query_string(self.type, self.page - 1)

    @property
    def next_query(self) -> str:
        return query_string(self.type, self.page + 1)

    @property
    def links(self) -> tuple[PageLink | None, ...]:
        """The numbered page links, None for a gap."""
        return tuple(
            None if number is None else PageLink(number, query_string(self.type, number))
            for number in self.page_links
        )


@dataclass(frozen=True)
class PageLink:
    number: int
    query: str


def query_string(type: models.InvoiceType, page: int = 1) -> str:
    params: dict[str, Any] = {}
    if type != "all":
        params["type"] = type
    if page != 1:
        params["page"] = page
    return "?" + urlencode(params) if params else ""


def invoice_table(
    fetched: upstream.Fetched[InvoiceList],
    type: models.InvoiceType,
    page: int,
    *,
    hosts: Collection[str] | None = None,
    per_page: int = PER_PAGE,
    people: Mapping[str, str] | None = None,
) -> InvoiceTable:
    """Page ``page`` of the assembled list; ``page_error`` when it is past the end."""
    hosts = settings.INVOICE_PDF_HOSTS if hosts is None else hosts
    base = InvoiceTable(type=type, page=page, **section_of(fetched))
    if fetched.value is None:
        return base
    found = fetched.value
    count = len(found.invoices)
    num_pages = max(1, math.ceil(count / per_page))
    base = replace(base, count=count, num_pages=num_pages, shortfall=describe_shortfall(found))
    if page > num_pages:
        pages = "1 page" if num_pages == 1 else f"{num_pages} pages"
        return replace(base, page_error=f"There is no page {page}: these invoices fill {pages}.")
    start = (page - 1) * per_page
    chosen = found.invoices[start : start + per_page]
    return replace(
        base,
        rows=tuple(invoice_row(invoice, hosts, people) for invoice in chosen),
        first_index=start + 1 if chosen else 0,
        last_index=start + len(chosen),
        page_links=page_links(page, num_pages),
    )


def page_links(page: int, num_pages: int, *, around: int = 2) -> tuple[int | None, ...]:
    """Page numbers to link: the first, the last and ``around`` either side; None is a gap."""
    wanted = {1, num_pages, *range(page - around, page + around + 1)}
    numbers = sorted(n for n in wanted if 1 <= n <= num_pages)
    links: list[int | None] = numbers[:1]
    for previous, number in pairwise(numbers):
        links += [None, number] if number - previous > 1 else [number]
    return tuple(links)


def describe_shortfall(found: InvoiceList) -> str | None:
    if not found.missing:
        return None
    noun = "invoice" if found.total_count == 1 else "invoices"
    said = f"Cloudflare returned {len(found.invoices)} of {found.total_count} {noun}."
    if found.shortfall == "capped":
        why = f"The dashboard stops after {MAX_UPSTREAM_PAGES} pages of answers."
    elif found.shortfall == "failed":
        why = f"Asking for the rest failed: {found.failure}"
    else:
        why = "It did not send the rest when asked for the next page."
    return f"{said} {why} Cloudflare's dashboard has the full history."


def describe_as_of(moment: datetime | None, now: datetime | None = None) -> str | None:
    """ "14:05" today, "9 Jun 2026, 14:05" another day, in the reporting time zone."""
    if moment is None:
        return None
    local = timezone.localtime(moment)
    today = timezone.localtime(now or timezone.now()).date()
    return dateformat.format(local, "H:i" if local.date() == today else "j M Y, H:i")


@dataclass(frozen=True)
class UpcomingLine:
    description: str | None
    period_start: datetime
    period_end: datetime
    quantity: str
    #: Line amount divided by quantity (None when the quantity is 0).
    unit_price: str | None
    #: ``pricing.unit_amount_decimal`` exactly as sent: its unit is undocumented.
    unit_amount_sent: str | None
    amount: str
    credits: str | None


@dataclass(frozen=True)
class UpcomingCard(Section):
    #: Cloudflare answered that there is no upcoming invoice.
    none: bool = False
    status: str | None = None
    status_class: str = "badge-neutral"
    period_start: datetime | None = None
    period_end: datetime | None = None
    total_due: str | None = None
    amount_paid: str | None = None
    amount_remaining: str | None = None
    currency: str | None = None
    credits: str | None = None
    lines: tuple[UpcomingLine, ...] = ()


def _credits(lines: Iterable[models.InvoiceLine], currency: str | None) -> str | None:
    """The lines' pre-tax credits in all, or None when they carry none."""
    amounts = [credit.amount for line in lines for credit in line.pretax_credit_amounts]
    return format_money(sum(amounts, Decimal(0)), currency) if amounts else None


def upcoming_line(line: models.InvoiceLine) -> UpcomingLine:
    return UpcomingLine(
        description=line.description,
        period_start=line.period.start,
        period_end=line.period.end,
        quantity=format_quantity(line.quantity),
        unit_price=format_unit_price(line.amount / line.quantity, line.currency)
        if line.quantity
        else None,
        unit_amount_sent=line.pricing.unit_amount_decimal,
        amount=format_money(line.amount, line.currency),
        credits=_credits([line], line.currency),
    )


def upcoming_card(fetched: upstream.Fetched[Upcoming]) -> UpcomingCard:
    base = section_of(fetched)
    if fetched.value is None:
        return UpcomingCard(**base)
    preview = fetched.value.preview
    if preview is None:
        return UpcomingCard(none=True, **base)
    label, badge = STATUSES.get(preview.status, UNKNOWN_STATUS)
    return UpcomingCard(
        status=label,
        status_class=badge,
        period_start=preview.period_start,
        period_end=preview.period_end,
        total_due=format_money(preview.amount_due, preview.currency),
        amount_paid=format_money(preview.amount_paid, preview.currency),
        amount_remaining=format_money(preview.amount_remaining, preview.currency),
        currency=currency_code(preview.currency),
        credits=_credits(preview.invoice_lines, preview.currency),
        lines=tuple(upcoming_line(line) for line in preview.invoice_lines),
        **base,
    )


@dataclass(frozen=True)
class InvoicesPage:
    table: InvoiceTable | None
    upcoming: UpcomingCard | None


def invoices_page(
    account_id: str,
    type: models.InvoiceType | None,
    page: int,
    *,
    with_upcoming: bool,
    deadline: float | None = None,
) -> InvoicesPage:
    """What the page (or a partial) shows; reads run in parallel. ``type`` None: the filter was
    invalid, the history is not read. With a ``deadline`` (a full page) a read still out is
    marked pending and loads itself later."""
    loaders: dict[str, Callable[[], upstream.Fetched[Any]]] = {}
    if type is not None:
        loaders["history"] = partial(invoice_list, account_id, type)
    if with_upcoming:
        loaders["upcoming"] = partial(reads.invoice_preview, account_id)
    if deadline is not None and loaders:
        fetched = upstream.gather(loaders, deadline=deadline)
    else:
        fetched = {name: load() for name, load in loaders.items()}
    table = None
    if type is not None:
        table = invoice_table(fetched["history"], type, page, people=made_here(account_id))
    card = upcoming_card(fetched["upcoming"]) if with_upcoming else None
    return InvoicesPage(table, card)
