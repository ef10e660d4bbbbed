"""Names, not machinery: who made a top-up, billing periods said one way, no commands or "K"."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
from django.core.cache import cache

from dashboard.models import Topup
from dashboard.services.money import format_period
from tests.conftest import ACCOUNT_ID
from tests.views.test_topups import confirm

INVOICES = f"/accounts/{ACCOUNT_ID}/invoices/"
OVERVIEW = f"/accounts/{ACCOUNT_ID}/"
STATIC_JS = Path(__file__).resolve().parents[2] / "static" / "js"


def text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize(
    ("start", "end", "shown"),
    [
        # Cloudflare's end is the start of the next period: the last day shown is the day before.
        (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "1–30 Nov 2026"),
        (
            datetime(2026, 11, 15, tzinfo=UTC),
            datetime(2026, 12, 15, tzinfo=UTC),
            "15 Nov – 14 Dec 2026",
        ),
        (
            datetime(2026, 12, 15, tzinfo=UTC),
            datetime(2027, 1, 15, tzinfo=UTC),
            "15 Dec 2026 – 14 Jan 2027",
        ),
        (datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC), "3 Nov 2026"),
        # An end within a day is on that day.
        (
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 11, 30, 12, tzinfo=UTC),
            "1–30 Nov 2026",
        ),
    ],
)
def test_it_says_a_billing_period_with_inclusive_dates(start, end, shown):
    assert format_period(start, end) == shown


def test_it_shows_the_billing_period_the_same_way_on_every_page(finance_client, sim, settings):
    settings.TIME_ZONE = "America/New_York"  # a billing period is in UTC days, wherever one is
    preview = sim.account(ACCOUNT_ID).invoice_preview(sim.now())
    start = datetime.fromtimestamp(preview["period_start"], UTC)
    end = datetime.fromtimestamp(preview["period_end"], UTC)
    assert (start, end) == (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    shown = "1–30 Jun 2026"
    invoices = text(finance_client.get(INVOICES).text)
    overview = text(finance_client.get(OVERVIEW + "?partial=invoice-card").text)
    assert f"Billing period {shown}" in invoices
    assert f"Billing period {shown}" in overview
    # The line items say their own periods the same way.
    assert "00:00" not in invoices.split("Billing period")[1].split("Invoices")[0]


def test_it_names_who_made_a_top_up_here_in_the_invoice_list(finance_client, finance, sim):
    confirm(finance_client, "25")
    sim.advance_clock(6)
    cache.clear()
    topup = Topup.objects.get()
    assert topup.payment_intent_id
    page = finance_client.get(INVOICES + "?type=manual").text
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[-1], re.S)
    ours = [text(row) for row in rows if topup.payment_intent_id in row or "$25.00" in row]
    assert ours and f"by {finance.get_username()}" in ours[0]
    assert "api-token" not in text(page)


def test_it_says_who_made_other_top_ups_in_words(finance_client, sim):
    table = text(finance_client.get(INVOICES).text)
    assert "api-token" not in table and "auto-topup" not in table


def test_it_names_no_command_in_the_pages(client, admin_client):
    login = client.get("/accounts/login/").text
    alerts = admin_client.get(f"/accounts/{ACCOUNT_ID}/alerts/").text
    assert "Demo logins" in login and "Nothing has fired yet" in alerts
    assert "manage.py" not in login and "manage.py" not in alerts


def test_it_writes_money_in_full_on_the_chart_axis():
    # "$1.2K" is not how finance writes money: the axis says "$1,200".
    script = (STATIC_JS / "usage.js").read_text()
    assert 'notation: "compact"' not in script
