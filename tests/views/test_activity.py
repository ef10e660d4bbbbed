"""The Activity page: the audit log as a page and a fragment, its filters, pages and CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape

import pytest
import time_machine
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.test import Client

from billing_api import errors
from dashboard.models import AuditEvent
from dashboard.services import activity as service
from dashboard.services import audit
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID

URL = f"/accounts/{ACCOUNT_ID}/activity/"
CSV_URL = f"/accounts/{ACCOUNT_ID}/activity.csv"
HTMX = {"HX-Request": "true", "HX-Target": "activity-table"}
HOSTILE = '<script>alert("x")</script>'


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def event(
    user: User,
    action: AuditEvent.Action = audit.Action.TOPUP,
    outcome: AuditEvent.Outcome = audit.Outcome.ACCEPTED,
    *,
    at: datetime | None = None,
    account_id: str = ACCOUNT_ID,
    **kwargs: object,
) -> AuditEvent:
    if at is None:
        return audit.record(user, account_id, action, outcome, **kwargs)  # type: ignore[arg-type]
    # Recorded at that moment: the database refuses to change an event's time afterwards.
    with time_machine.travel(at, tick=False):
        return audit.record(user, account_id, action, outcome, **kwargs)  # type: ignore[arg-type]


def table_rows(html: str) -> list[str]:
    """Each row of the table as its text, whitespace collapsed."""
    body = re.search(r"<tbody>(.*?)</tbody>", html, re.S)
    if body is None:
        return []
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", row)).split()) for row in rows]


def csv_of(response: HttpResponse) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


# ---------------------------------------------------------------- page and fragment


def test_it_shows_the_accounts_events_newest_first_as_a_page(finance_client, finance, admin):
    event(finance, at=datetime(2026, 6, 1, 9, 0, tzinfo=UTC), after={"amount": Decimal("25")})
    event(
        admin,
        audit.Action.AUTO_TOPUP_SET,
        audit.Outcome.ACCEPTED,
        at=datetime(2026, 6, 2, 9, 0, tzinfo=UTC),
        before={"amount": Decimal("10.00"), "threshold": Decimal("5.00")},
        after={"amount": Decimal("20.00"), "threshold": Decimal("5.00")},
    )
    response = finance_client.get(URL)
    assert response.status_code == 200
    assert "<html" in response.text and 'id="activity-table"' in response.text
    assert response["Vary"].count("HX-Request") == 1
    rows = table_rows(response.text)
    assert len(rows) == 2
    assert rows[0].startswith("2 Jun 2026 09:00:00 ada Auto top-up rule saved Accepted")
    assert "Amount: $10.00 → $20.00" in rows[0]
    assert "Threshold" not in rows[0]  # unchanged fields are left out
    assert "frank One-off top-up Accepted Amount: $25.00" in rows[1]
    assert '<span class="badge badge-ok">Accepted</span>' in response.text
    assert 'href="/accounts/' + ACCOUNT_ID + '/activity/" aria-current="page"' in response.text


def test_it_answers_htmx_with_the_table_only(finance_client, finance):
    event(finance)
    response = finance_client.get(URL, headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="activity-table"')
    assert "<html" not in response.text and "activity-filter" not in response.text
    assert len(table_rows(response.text)) == 1
    assert "HX-Request" in response["Vary"]


def test_it_wires_filters_and_pages_to_swap_the_table(finance_client, finance):
    page = finance_client.get(URL).text
    assert 'hx-target="#activity-table"' in page and 'hx-push-url="true"' in page
    assert 'hx-indicator="#activity-log"' in page and "htmx-indicator" in page
    assert f'<form class="activity-filter" method="get" action="{URL}"' in page


def test_it_shows_what_cloudflare_answered(finance_client, admin):
    error = errors.PermissionDeniedError(
        "POST spending-limit answered HTTP 403",
        status_code=403,
        errors=(errors.CloudflareErrorDetail(1000, "deprecated"),),
        request_id="8f00-LHR",
    )
    event(
        admin,
        audit.Action.SPENDING_LIMIT_SET,
        audit.outcome_of(error),
        error=error,
        after={"limit": Decimal("500.00")},
    )
    response = finance_client.get(URL)
    (row,) = table_rows(response.text)
    assert "HTTP 403 · code 1000 · request 8f00-LHR" in row
    assert "Refused by Cloudflare" in row and "Limit: $500.00" in row
    assert "Cloudflare refused this request: the API token is not allowed" in row
    assert '<span class="badge badge-error">Refused by Cloudflare</span>' in response.text


@pytest.mark.parametrize(
    ("outcome", "badge"),
    [
        (audit.Outcome.ACCEPTED, "badge-ok"),
        (audit.Outcome.INVALID, "badge-neutral"),
        (audit.Outcome.FORBIDDEN, "badge-warning"),
        (audit.Outcome.REFUSED, "badge-error"),
        (audit.Outcome.FAILED, "badge-error"),
        (audit.Outcome.UNKNOWN, "badge-warning"),
    ],
)
def test_it_badges_each_outcome(finance_client, finance, outcome, badge):
    event(finance, outcome=outcome)
    page = finance_client.get(URL).text
    assert f'<span class="badge {badge}">{outcome.label}</span>' in page


def test_it_escapes_hostile_text_from_upstream(finance_client, finance):
    event(
        finance,
        audit.Action.AUTO_TOPUP_SET,
        audit.Outcome.FAILED,
        detail=HOSTILE,
        before={"note": HOSTILE},
        after={HOSTILE: "<img src=x onerror=alert(1)>"},
    )
    page = finance_client.get(URL).text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_it_never_shows_another_accounts_events(finance_client, finance):
    event(finance, account_id=OTHER_ACCOUNT_ID, detail="other account secret")
    event(finance, detail="this account")
    page = finance_client.get(URL).text
    assert "this account" in page and "other account secret" not in page
    csv_text = finance_client.get(CSV_URL).content.decode()
    assert "this account" in csv_text and "other account secret" not in csv_text


def test_it_says_when_there_is_nothing_yet(finance_client):
    response = finance_client.get(URL)
    assert response.status_code == 200
    assert "No changes have been asked for on this account yet." in response.text
    assert "Download CSV" not in response.text


# ---------------------------------------------------------------- filters


@pytest.fixture
def mixed(finance: User, admin: User) -> None:
    event(finance, at=datetime(2026, 6, 1, 10, tzinfo=UTC), detail="e1 topup frank")
    event(
        admin,
        audit.Action.AUTO_TOPUP_DELETE,
        audit.Outcome.REFUSED,
        at=datetime(2026, 6, 3, 10, tzinfo=UTC),
        detail="e2 delete ada",
    )
    event(
        admin,
        audit.Action.TOPUP,
        audit.Outcome.FAILED,
        at=datetime(2026, 6, 5, 23, 30, tzinfo=UTC),
        detail="e3 topup ada",
    )


def details(html: str) -> list[str]:
    return re.findall(r"\be\d \w+ \w+", " ".join(table_rows(html)))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["e3 topup ada", "e2 delete ada", "e1 topup frank"]),
        ("?action=topup.create", ["e3 topup ada", "e1 topup frank"]),
        ("?outcome=refused", ["e2 delete ada"]),
        ("?user=frank", ["e1 topup frank"]),
        ("?start=2026-06-03", ["e3 topup ada", "e2 delete ada"]),
        ("?end=2026-06-03", ["e2 delete ada", "e1 topup frank"]),
        ("?start=2026-06-02&end=2026-06-04", ["e2 delete ada"]),
        ("?action=topup.create&user=ada", ["e3 topup ada"]),
        ("?outcome=invalid", []),
    ],
)
def test_it_filters_by_the_query_string(finance_client, mixed, query, expected):
    for headers in ({}, HTMX):
        response = finance_client.get(URL + query, headers=headers)
        assert response.status_code == 200, response.text
        assert details(response.text) == expected
    if not expected:
        assert "No events match these filters." in response.text


def test_it_reads_dates_in_the_reporting_zone(finance_client, mixed, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    # 23:30 UTC on 5 June is 01:30 on 6 June in Berlin.
    page = finance_client.get(URL + "?start=2026-06-06").text
    assert details(page) == ["e3 topup ada"]
    assert table_rows(page)[0].startswith("6 Jun 2026 01:30:00 ada")
    assert "Times in Europe/Berlin" in page


def test_it_keeps_the_filter_in_the_form(finance_client, mixed):
    page = finance_client.get(URL + "?outcome=refused&user=ada").text
    assert '<option value="refused" selected>' in page
    assert '<option value="ada" selected>' in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?action=topup.delete", "Choose one of the actions offered."),
        ("?outcome=maybe", "Choose one of the outcomes offered."),
        ("?user=mallory", "Choose someone who appears in this log."),
        ("?start=yesterday", "Enter the start date as YYYY-MM-DD."),
        ("?end=2026-13-01", "Enter the end date as YYYY-MM-DD."),
        ("?start=0001-01-01", "Enter a start date between 2000 and 2999."),
        ("?start=2026-06-05&end=2026-06-01", "The end date is before the start date."),
        ("?page=0", "The page must be 1 or more."),
        ("?page=two", "The page must be a whole number."),
        ("?page=2", "There is no page 2: these events fill 1 page."),
    ],
)
def test_it_answers_bad_filters_with_400_and_the_errors(finance_client, mixed, query, message):
    page = finance_client.get(URL + query)
    assert page.status_code == 400
    assert "<html" in page.text and message in unescape(page.text)
    assert "activity-filter" in page.text and "<tbody>" not in page.text
    fragment = finance_client.get(URL + query, headers=HTMX)
    assert fragment.status_code == 400
    assert "<html" not in fragment.text and message in unescape(fragment.text)
    assert "HX-Request" in fragment["Vary"]


# ---------------------------------------------------------------- pages


def test_it_pages_fifty_events_keeping_the_filters(finance_client, finance, admin):
    for _ in range(service.PER_PAGE + 5):
        event(finance, detail="by frank")
    event(admin, detail="by ada")
    first = finance_client.get(URL + "?user=frank")
    assert len(table_rows(first.text)) == service.PER_PAGE
    assert "Events 1–50 of 55 matching the filters, page 1 of 2" in unescape(first.text)
    assert f'href="{URL}?user=frank&amp;page=2"' in first.text
    second = finance_client.get(URL + "?user=frank&page=2", headers=HTMX)
    assert second.status_code == 200
    assert len(table_rows(second.text)) == 5
    assert f'href="{URL}?user=frank" hx-get="{URL}?user=frank" rel="prev"' in second.text
    assert "by ada" not in first.text + second.text
    past = finance_client.get(URL + "?user=frank&page=3")
    assert past.status_code == 400
    assert "There is no page 3: these events fill 2 pages." in past.text


# ---------------------------------------------------------------- who may see it


def test_it_refuses_the_team_lead_page_and_export(lead, finance):
    event(finance)
    client = login(lead)
    assert client.get(URL).status_code == 403
    assert client.get(CSV_URL).status_code == 403
    assert 'href="' + URL + '"' not in client.get(f"/accounts/{ACCOUNT_ID}/").text


@pytest.mark.parametrize("persona", ["finance", "admin"])
def test_it_lets_finance_and_admins_see_and_export(request, persona):
    user = request.getfixturevalue(persona)
    event(user)
    client = login(user)
    page = client.get(URL)
    assert page.status_code == 200 and "Download CSV" in page.text
    assert f'href="{URL}"' in client.get(f"/accounts/{ACCOUNT_ID}/").text  # the nav link
    assert client.get(CSV_URL).status_code == 200


def test_it_answers_404_to_an_outsider(outsider):
    client = login(outsider)
    assert client.get(URL).status_code == 404
    assert client.get(CSV_URL).status_code == 404


# ---------------------------------------------------------------- CSV


def test_it_exports_exactly_the_filtered_events(finance_client, mixed, finance):
    event(
        finance,
        audit.Action.AUTO_TOPUP_SET,
        audit.Outcome.REFUSED,
        at=datetime(2026, 6, 4, 8, tzinfo=UTC),
        before={"amount": Decimal("10.00")},
        after={"amount": Decimal("20.00")},
        detail='=HYPERLINK("http://evil")',
        idempotency_key="@key",
        error=errors.PermissionDeniedError(
            "nope",
            status_code=403,
            errors=(
                errors.CloudflareErrorDetail(10000, "a"),
                errors.CloudflareErrorDetail(10001, "b"),
            ),
            request_id="-req",
        ),
    )
    response = finance_client.get(CSV_URL + "?outcome=refused&start=2026-06-02")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    today = datetime.now(UTC).date().isoformat()
    assert response["Content-Disposition"] == (
        f'attachment; filename="activity-{ACCOUNT_ID}-{today}.csv"'
    )
    header, *rows = csv_of(response)
    assert header == [
        "time_utc",
        "time_local (UTC)",
        "user",
        "account",
        "action",
        "outcome",
        "before",
        "after",
        "upstream_status",
        "upstream_codes",
        "request_id",
        "idempotency_key",
        "detail",
    ]
    assert [row[-1] for row in rows] == ['\'=HYPERLINK("http://evil")', "e2 delete ada"]
    first = rows[0]
    assert first[:6] == [
        "2026-06-04T08:00:00Z",
        "2026-06-04T08:00:00+00:00",
        "frank",
        ACCOUNT_ID,
        "auto_topup.set",
        "refused",
    ]
    assert first[6:12] == [
        '{"amount": "10.00"}',
        '{"amount": "20.00"}',
        "403",
        "10000 10001",
        "'-req",
        "'@key",
    ]


def test_it_exports_every_page(finance_client, finance):
    for _ in range(service.PER_PAGE + 1):
        event(finance)
    _, *rows = csv_of(finance_client.get(CSV_URL))
    assert len(rows) == service.PER_PAGE + 1


def test_it_links_the_export_with_the_page_filters(finance_client, mixed):
    page = finance_client.get(URL + "?outcome=failed&page=1").text
    assert f'href="{CSV_URL}?outcome=failed"' in page


def test_it_refuses_a_bad_or_oversized_export(finance_client, mixed, monkeypatch):
    bad = finance_client.get(CSV_URL + "?start=2026-06-05&end=2026-06-01")
    assert bad.status_code == 400
    assert "The end date is before the start date." in bad.text
    monkeypatch.setattr(service, "CSV_MAX_ROWS", 2)
    too_big = finance_client.get(CSV_URL)
    assert too_big.status_code == 400
    assert "3 events match, and an export holds at most 2" in too_big.text
    assert "Too many events for one export" in finance_client.get(URL).text
    assert finance_client.get(CSV_URL + "?user=ada&outcome=failed").status_code == 200


# ---------------------------------------------------------------- summaries


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, None, []),
        (None, {"amount": "25.00"}, [("Amount", None, "$25.00")]),
        ({"amount": "25.00"}, None, [("Amount", "$25.00", "removed")]),
        (
            {"amount": "10.00", "enabled": True},
            {"amount": "10.00", "enabled": False},
            [("Enabled", "yes", "no")],
        ),
        ({"payment_method_id": "pm_1"}, {}, [("Payment method id", "pm_1", "removed")]),
        ("12.5", "-3.25", [("Value", "$12.50", "−$3.25")]),
        (None, {"codes": [1, 2]}, [("Codes", None, "1, 2")]),
    ],
)
def test_it_summarises_before_and_after(before, after, expected):
    found = [(c.label, c.before, c.after) for c in service.changes(before, after)]
    assert found == expected
