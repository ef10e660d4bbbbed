"""The pure parts of the Invoices page: page assembly, paging, PDF links, money, the form."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from billing_api import errors, models
from billing_api.client import BillingClient
from dashboard.infra import upstream
from dashboard.services import invoices as service
from dashboard.services import reads
from dashboard.web.forms import InvoiceFilterForm
from tests.conftest import settings_module

HOSTS = ("pay.stripe.com", "invoice.stripe.com", "files.stripe.com")
NOW = datetime(2026, 6, 10, 12, 30, tzinfo=UTC)


def invoice_json(**overrides: Any) -> dict[str, Any]:
    invoice = {
        "id": "in_1",
        "amount_due": 2500,
        "amount_paid": 2500,
        "amount_remaining": 0,
        "currency": "usd",
        "created": 1780000000,
        "created_by": "finance@example.com",
        "description": "AI Gateway Unified Billing credits (top-up)",
        "invoice_origin": "manual",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_1/in_1/pdf",
        "status": "paid",
    }
    return invoice | overrides


def invoice(number: int, **overrides: Any) -> models.Invoice:
    return models.Invoice.model_validate(invoice_json(id=f"in_{number}", **overrides))


def history_page(
    numbers: range | list[int], *, page: int, total: int, has_more: bool
) -> models.InvoiceHistory:
    return models.InvoiceHistory(
        invoices=[invoice(n) for n in numbers],
        pagination=models.Pagination(has_more=has_more, page=page, per_page=20, total_count=total),
    )


class Upstream:
    """A fake invoice-history: ``total`` invoices, ``per_page`` at a time, page by page."""

    def __init__(self, total: int, per_page: int = 20, *, honours_page: bool = True) -> None:
        self.total = total
        self.per_page = per_page
        self.honours_page = honours_page
        self.asked: list[int] = []
        self.fail_on: dict[int, errors.BillingError] = {}

    def __call__(self, page: int) -> models.InvoiceHistory:
        self.asked.append(page)
        if page in self.fail_on:
            raise self.fail_on[page]
        served = page if self.honours_page else 1
        start = (served - 1) * self.per_page
        numbers = range(start, min(self.total, start + self.per_page))
        return history_page(
            numbers,
            page=served,
            total=self.total,
            has_more=served * self.per_page < self.total,
        )


def fetched(value: Any, error: str | None = None) -> upstream.Fetched[Any]:
    return upstream.Fetched(value, NOW if value is not None else None, error=error)


# ---------------------------------------------------------------- assembling the history


def test_it_follows_the_pages_cloudflare_says_it_has():
    fake = Upstream(total=57)
    found = service.collect_invoices(fake)
    assert fake.asked == [1, 2, 3]
    assert [i.id for i in found.invoices] == [f"in_{n}" for n in range(57)]
    assert found.missing == 0 and found.shortfall is None
    assert service.describe_shortfall(found) is None


def test_it_asks_once_when_everything_fits_on_the_first_page():
    fake = Upstream(total=7)
    found = service.collect_invoices(fake)
    assert fake.asked == [1]
    assert len(found.invoices) == 7


def test_it_stops_when_cloudflare_ignores_the_page_parameter():
    fake = Upstream(total=57, honours_page=False)
    found = service.collect_invoices(fake)
    assert fake.asked == [1, 2]
    assert len(found.invoices) == 20
    assert found.shortfall == "ignored"
    words = service.describe_shortfall(found)
    assert words is not None
    assert words.startswith("Cloudflare returned 20 of 57 invoices.")


def test_it_stops_when_the_next_page_repeats_the_invoices_it_has():
    # The page number is echoed, but the invoices are the first page's again.
    def same_invoices(page: int) -> models.InvoiceHistory:
        return history_page(range(20), page=page, total=40, has_more=True)

    found = service.collect_invoices(same_invoices)
    assert len(found.invoices) == 20
    assert found.shortfall == "ignored"


def test_it_stops_after_a_sane_number_of_pages():
    fake = Upstream(total=10_000)
    found = service.collect_invoices(fake, max_pages=3)
    assert fake.asked == [1, 2, 3]
    assert found.shortfall == "capped"
    words = service.describe_shortfall(found)
    assert words is not None and "Cloudflare returned 60 of 10000 invoices." in words


def test_it_keeps_the_first_pages_when_a_later_one_fails():
    fake = Upstream(total=57)
    fake.fail_on[2] = errors.UpstreamError("GET invoice-history: 503", status_code=503)
    found = service.collect_invoices(fake)
    assert len(found.invoices) == 20
    assert found.shortfall == "failed"
    words = service.describe_shortfall(found)
    assert words is not None
    assert errors.UpstreamError.user_message in words


def test_it_raises_when_the_first_page_fails():
    fake = Upstream(total=57)
    fake.fail_on[1] = errors.BillingTimeout("no answer")
    with pytest.raises(errors.BillingTimeout):
        service.collect_invoices(fake)


def test_it_says_so_when_cloudflare_sends_fewer_than_it_counts():
    def short(page: int) -> models.InvoiceHistory:
        return history_page(range(5), page=1, total=8, has_more=False)

    found = service.collect_invoices(short)
    assert found.missing == 3
    words = service.describe_shortfall(found)
    assert words is not None and words.startswith("Cloudflare returned 5 of 8 invoices.")


def test_it_tells_invoices_without_ids_apart_by_their_contents():
    def no_ids(page: int) -> models.InvoiceHistory:
        invoices = [
            models.Invoice.model_validate(invoice_json(id=None, created=1780000000 + n + page))
            for n in range(0, 20, 10)
        ]
        return models.InvoiceHistory(
            invoices=invoices,
            pagination=models.Pagination(has_more=page < 2, page=page, per_page=2, total_count=4),
        )

    found = service.collect_invoices(no_ids)
    assert len(found.invoices) == 4 and found.shortfall is None


def test_it_reads_each_history_page_through_the_client(sim):
    found = service.invoice_list(sim.account_ids[0], "all").value
    assert found is not None
    assert len(found.invoices) == found.total_count == 30
    assert sim.calls["GET invoice-history"] == 2


# ---------------------------------------------------------------- paging in the dashboard


def listing(count: int, total: int | None = None) -> service.InvoiceList:
    invoices = tuple(invoice(n) for n in range(count))
    return service.InvoiceList(invoices, count if total is None else total)


def test_it_shows_a_page_of_twenty():
    table = service.invoice_table(fetched(listing(45)), "all", 3, hosts=HOSTS)
    assert [row.id for row in table.rows] == [f"in_{n}" for n in range(40, 45)]
    assert (table.first_index, table.last_index, table.count) == (41, 45, 45)
    assert table.num_pages == 3 and not table.has_next and table.has_previous
    assert table.page_error is None
    assert table.previous_query == "?page=2"


def test_it_refuses_a_page_past_the_end():
    table = service.invoice_table(fetched(listing(45)), "auto", 4, hosts=HOSTS)
    assert table.page_error == "There is no page 4: these invoices fill 3 pages."
    assert table.rows == ()


def test_it_shows_an_empty_first_page_but_no_second():
    empty = fetched(listing(0))
    assert service.invoice_table(empty, "all", 1, hosts=HOSTS).page_error is None
    second = service.invoice_table(empty, "all", 2, hosts=HOSTS)
    assert second.page_error == "There is no page 2: these invoices fill 1 page."


def test_it_carries_a_failure_without_data():
    table = service.invoice_table(fetched(None, error="Down."), "all", 5, hosts=HOSTS)
    assert table.error == "Down." and not table.loaded and not table.stale
    assert table.page_error is None


def test_it_carries_stale_data_with_the_failure():
    table = service.invoice_table(fetched(listing(3), error="Down."), "all", 1, hosts=HOSTS)
    assert table.stale and len(table.rows) == 3


@pytest.mark.parametrize(
    ("page", "num_pages", "links"),
    [
        (1, 1, (1,)),
        (1, 3, (1, 2, 3)),
        (1, 10, (1, 2, 3, None, 10)),
        (5, 10, (1, None, 3, 4, 5, 6, 7, None, 10)),
        (10, 10, (1, None, 8, 9, 10)),
        (4, 7, (1, 2, 3, 4, 5, 6, 7)),
    ],
)
def test_it_links_the_pages_around_this_one(page, num_pages, links):
    assert service.page_links(page, num_pages) == links


@pytest.mark.parametrize(
    ("type", "page", "query"),
    [
        ("all", 1, ""),
        ("all", 2, "?page=2"),
        ("auto", 1, "?type=auto"),
        ("manual", 3, "?type=manual&page=3"),
    ],
)
def test_it_builds_canonical_query_strings(type, page, query):
    assert service.query_string(type, page) == query


# ---------------------------------------------------------------- rows


def test_it_describes_a_row_in_plain_words():
    row = service.invoice_row(invoice(1, invoice_origin="auto", status="open"), HOSTS)
    assert row.origin == "Auto top-up"
    assert (row.status, row.status_class) == ("Open", "badge-warning")
    assert row.amount_due == "$25.00" and row.currency == "USD"


@pytest.mark.parametrize(
    ("status", "label", "badge"),
    [
        ("paid", "Paid", "badge-ok"),
        ("open", "Open", "badge-warning"),
        ("void", "Void", "badge-neutral"),
        ("draft", "Draft", "badge-neutral"),
        ("uncollectible", "Uncollectible", "badge-error"),
        ("PAID", "Paid", "badge-ok"),
        (None, "Unknown", "badge-neutral"),
        ("refunded", "Unknown", "badge-neutral"),
    ],
)
def test_it_badges_every_status(status, label, badge):
    row = service.invoice_row(invoice(1, status=status), HOSTS)
    assert (row.status, row.status_class) == (label, badge)
    assert row.status_sent == (status if label == "Unknown" else None)


def test_it_shows_an_unknown_origin_as_sent():
    assert service.invoice_row(invoice(1, invoice_origin="promo"), HOSTS).origin == "promo"
    assert service.invoice_row(invoice(1, invoice_origin=None), HOSTS).origin == "Unknown"


# ---------------------------------------------------------------- the upcoming invoice


def preview_json(**overrides: Any) -> dict[str, Any]:
    preview = {
        "id": "upcoming_in_1",
        "amount_due": 100000,
        "amount_paid": 0,
        "amount_remaining": 100000,
        "currency": "usd",
        "period_start": 1780272000,
        "period_end": 1782864000,
        "status": "draft",
        "invoice_lines": [
            {
                "amount": 60000,
                "currency": "usd",
                "description": "OpenAI gpt-4o tokens",
                "period": {"start": 1780272000, "end": 1782864000},
                "pricing": {"unit_amount_decimal": "0.0005"},
                "quantity": 120000000,
                "pretax_credit_amounts": [{"amount": 1500, "type": "credit_balance_transaction"}],
            },
            {
                "amount": 40000,
                "currency": "usd",
                "description": None,
                "period": {"start": 1780272000, "end": 1782864000},
                "pricing": {"unit_amount_decimal": None},
                "quantity": 0,
            },
        ],
    }
    return preview | overrides


def test_it_describes_the_upcoming_invoice():
    preview = models.InvoicePreview.model_validate(preview_json())
    card = service.upcoming_card(fetched(reads.Upcoming(preview)))
    assert card.loaded and not card.none
    assert card.total_due == "$1,000.00" and card.credits == "$15.00"
    assert (card.status, card.status_class) == ("Draft", "badge-neutral")
    first, second = card.lines
    assert first.unit_price == "$0.000005" and first.unit_amount_sent == "0.0005"
    assert first.quantity == "120,000,000" and first.credits == "$15.00"
    assert second.unit_price is None and second.credits is None
    assert second.description is None


def test_it_describes_no_upcoming_invoice():
    card = service.upcoming_card(fetched(reads.Upcoming(None)))
    assert card.none and card.loaded and card.error is None


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> BillingClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return BillingClient(
        "https://api.example.test/client/v4", "t", "0" * 32, http_client=http, max_retries=0
    )


def not_found(code: int) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {
            "success": False,
            "errors": [{"code": code, "message": "Not found"}],
            "result": None,
        }
        return httpx.Response(404, content=json.dumps(body))

    return handler


def test_it_reads_a_404_from_the_preview_as_no_upcoming_invoice():
    with mock_client(not_found(1004)) as client:
        assert reads.load_upcoming(client) == reads.Upcoming(None)


@pytest.mark.parametrize("code", sorted(reads.ROUTING_CODES))
def test_it_still_reports_an_unknown_account_as_an_error(code):
    with mock_client(not_found(code)) as client, pytest.raises(errors.NotFoundError):
        reads.load_upcoming(client)


def test_it_reads_the_preview_through_the_client():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/ai-gateway/billing/invoice-preview")
        body = {"success": True, "errors": [], "messages": [], "result": preview_json()}
        return httpx.Response(200, content=json.dumps(body))

    with mock_client(handler) as client:
        upcoming = reads.load_upcoming(client)
    assert upcoming.preview is not None and upcoming.preview.amount_due == Decimal("1000")


# ---------------------------------------------------------------- as of


def test_it_says_as_of_with_the_time_today_and_the_date_before(settings):
    settings.TIME_ZONE = "UTC"
    assert service.describe_as_of(NOW - timedelta(minutes=5), NOW) == "12:25"
    assert service.describe_as_of(NOW - timedelta(days=1), NOW) == "9 Jun 2026, 12:30"
    assert service.describe_as_of(None, NOW) is None


# ---------------------------------------------------------------- the filter form


@pytest.mark.parametrize(
    ("data", "cleaned"),
    [
        ({}, {"type": "all", "page": 1}),
        ({"type": "", "page": ""}, {"type": "all", "page": 1}),
        ({"type": "auto", "page": "3"}, {"type": "auto", "page": 3}),
        ({"type": "manual", "page": " 2 "}, {"type": "manual", "page": 2}),
    ],
)
def test_it_cleans_the_filter_into_domain_values(data, cleaned):
    form = InvoiceFilterForm(data)
    assert form.is_valid(), form.errors
    assert form.cleaned_data == cleaned


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "AUTO"}, "type"),
        ({"type": "both"}, "type"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "x"}, "page"),
        ({"page": "2.5"}, "page"),
    ],
)
def test_it_refuses_a_bad_filter(data, field):
    form = InvoiceFilterForm(data)
    assert not form.is_valid()
    assert list(form.errors) == [field]


# ---------------------------------------------------------------- settings


@pytest.fixture
def load_settings(monkeypatch):
    """The settings module run afresh in demo mode, with ``INVOICE_PDF_HOSTS`` as given."""

    def load(hosts: str | None) -> Any:
        for name in ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNTS", "BILLING_API_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        if hosts is None:
            monkeypatch.delenv("INVOICE_PDF_HOSTS", raising=False)
        else:
            monkeypatch.setenv("INVOICE_PDF_HOSTS", hosts)
        return settings_module()

    return load


def test_it_links_stripes_pdf_hosts_by_default(load_settings):
    hosts = load_settings(None).INVOICE_PDF_HOSTS
    assert hosts == list(HOSTS)


def test_it_reads_pdf_hosts_from_the_environment(load_settings):
    hosts = load_settings(" Pay.Stripe.com, pdfs.example.com ").INVOICE_PDF_HOSTS
    assert hosts == ["pay.stripe.com", "pdfs.example.com"]


@pytest.mark.parametrize(
    "hosts", ["https://pay.stripe.com", "pay.stripe.com/x", "*.stripe.com", "localhost"]
)
def test_it_refuses_pdf_hosts_that_are_not_host_names(load_settings, hosts):
    with pytest.raises(ImproperlyConfigured, match="INVOICE_PDF_HOSTS"):
        load_settings(hosts)
