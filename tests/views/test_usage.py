"""The usage page and its CSV export, against the simulator, as a page and as a fragment."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from html import unescape
from typing import Any

import pytest
from django.utils.html import escape

from billing_api.simulator import Simulator
from dashboard.infra import clock
from tests.conftest import (
    ACCOUNT_ID,
    SAFETY_TIMEOUT,
    SIMULATOR_NOW,
    ReleaseWhenInFlight,
    hold,
    wait_for_background_reads,
)

NOW = datetime.fromtimestamp(SIMULATOR_NOW, UTC)
USAGE_URL = f"/accounts/{ACCOUNT_ID}/usage/"
CSV_URL = f"/accounts/{ACCOUNT_ID}/usage.csv"
HTMX = {"HX-Request": "true", "HX-Target": "usage-report"}


@pytest.fixture(autouse=True)
def _report_clock(monkeypatch) -> None:
    """The report's "now" is the simulator's frozen clock, so the history lines up."""
    monkeypatch.setattr(clock, "now", lambda: NOW)


def chart_data(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="usage-data" type="application/json">(.*?)</script>', html)
    assert match, "no chart data on the page"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def table_rows(html: str) -> list[tuple[str, str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", html, re.S)
    assert body, "no table on the page"
    cells = re.findall(
        r'<th scope="row">(.*?)</th>\s*<td class="num">(.*?)</td>', body.group(1), re.S
    )
    return [(re.sub(r"<[^>]+>", "", label).strip(), unescape(spend)) for label, spend in cells]


def stat(html: str, name: str) -> str:
    match = re.search(rf"<dt>{name}</dt>\s*<dd class=\"money\"[^>]*>(.*?)</dd>", html)
    assert match, f"no {name} on the page"
    return unescape(match.group(1))


def cents_between(sim: Simulator, start: datetime, end: datetime) -> Decimal:
    hours = int(start.timestamp()) // 3600, int(end.timestamp()) // 3600
    return Decimal(str(sim.account(ACCOUNT_ID).usage_between(*hours))) / 100


def assert_no_report(html: str) -> None:
    assert 'id="usage-chart"' not in html
    assert "<tbody>" not in html
    assert "<dt>Total</dt>" not in html


# ---------------------------------------------------------------- the page


def test_it_shows_spend_per_day_for_the_last_7_days_by_default(lead_client, sim):
    response = lead_client.get(USAGE_URL)
    assert response.status_code == 200
    html = response.text
    assert "<h1>Usage</h1>" in html
    assert "Times in UTC." in html
    # The 7 complete days before today, as the overview's burn rate counts them.
    assert "3 Jun 2026 to 9 Jun 2026." in html
    rows = table_rows(html)
    assert [label for label, _ in rows][:2] == ["Wed 3 Jun 2026", "Thu 4 Jun 2026"]
    assert rows[-1][0] == "Tue 9 Jun 2026"
    data = chart_data(html)
    assert data["unit"] == "day" and len(data["values"]) == 7
    assert data["inProgress"] == [False] * 7
    assert "The fainter bar is the day still running" not in html
    # Cloudflare's own UTC day buckets, one call.
    assert sim.calls["GET usage-history"] == 1


def test_it_shows_totals_average_and_the_busiest_bucket(lead_client, sim):
    html = lead_client.get(USAGE_URL + "?range=7d").text
    days = [
        cents_between(sim, datetime(2026, 6, d, tzinfo=UTC), datetime(2026, 6, d + 1, tzinfo=UTC))
        for d in range(3, 10)
    ]
    assert sum(days) == Decimal("1513.0758")
    assert stat(html, "Total") == "$1,513.08"
    assert stat(html, "Average per day") == "$216.15"
    assert "per day over 3–9 Jun, complete days, UTC" in html
    assert stat(html, "Busiest day") == "$283.60"
    busiest = datetime(2026, 6, 3 + days.index(max(days)), tzinfo=UTC)
    assert f"{busiest:%a} {busiest.day} {busiest:%b %Y}" in html
    shown = ["$265.45", "$283.60", "$268.43", "$98.89", "$99.92", "$231.73", "$265.06"]
    assert [spend for _, spend in table_rows(html)] == shown


def test_it_shows_the_same_figures_in_an_accessible_table(lead_client):
    html = lead_client.get(USAGE_URL).text
    assert "<caption>Spend per day, 3 Jun 2026 to 9 Jun 2026, times in UTC</caption>" in html
    assert '<th scope="col">Day</th>' in html
    assert '<th scope="col" class="num">Spend</th>' in html
    assert len(table_rows(html)) == len(chart_data(html)["values"])


def test_it_shows_the_last_24_hours_in_hour_buckets(lead_client, sim):
    html = lead_client.get(USAGE_URL + "?range=24h").text
    data = chart_data(html)
    assert data["unit"] == "hour"
    # The 24 complete hours, 12:00 yesterday to 11:00 today: the one now running is left out.
    assert len(data["values"]) == 24
    assert table_rows(html)[0][0] == "Tue 9 Jun 2026, 12:00"
    assert '<th scope="col">Hour starting</th>' in html
    assert cents_between(sim, datetime(2026, 6, 9, 12, tzinfo=UTC), NOW) == Decimal("265.1565")
    assert stat(html, "Total") == "$265.16"
    assert "over 9 Jun 12:00–10 Jun 12:00, UTC" in html


@pytest.mark.parametrize(
    ("query", "label", "buckets"),
    [
        ("?range=30d", "11 May 2026 to 9 Jun 2026.", 30),
        ("?range=90d", "12 Mar 2026 to 9 Jun 2026.", 90),
        ("?range=mtd", "1 Jun 2026 to 10 Jun 2026 (to the end of the last complete hour)", 10),
        ("?range=last-month", "1 May 2026 to 31 May 2026.", 31),
        ("?range=24h&window=day", "9 Jun 2026 to 10 Jun 2026 (to the end of the last", 2),
        ("?range=7d&window=hour", "3 Jun 2026, 00:00 to 10 Jun 2026, 00:00.", 168),
        ("?range=custom&start=2026-06-01&end=2026-06-03", "1 Jun 2026 to 3 Jun 2026.", 3),
    ],
)
def test_it_shows_each_range(lead_client, query, label, buckets):
    response = lead_client.get(USAGE_URL + query)
    assert response.status_code == 200
    assert label in response.text
    assert len(chart_data(response.text)["values"]) == buckets


def test_it_marks_the_current_range_and_window(lead_client):
    html = lead_client.get(USAGE_URL + "?range=30d&window=hour").text
    assert re.search(r'\?range=30d&amp;window=hour"[^>]*aria-current="true">Hour<', html)
    assert re.search(r'\?range=30d&amp;window=hour"[^>]*aria-current="true">30 days<', html)


def test_it_keeps_all_state_in_links_and_a_get_form_that_work_without_javascript(lead_client):
    html = lead_client.get(USAGE_URL + "?range=30d&window=hour").text
    # Range links keep an asked-for window; window links keep the range.
    assert f'href="{USAGE_URL}?range=24h&amp;window=hour"' in html
    assert f'href="{USAGE_URL}?range=30d&amp;window=day"' in html
    assert f'<form class="usage-custom" method="get" action="{USAGE_URL}"' in html
    assert 'name="start" value="2026-05-11"' in html
    assert 'name="end" value="2026-06-09"' in html
    # And each of them swaps the report alone, pushing its URL.
    assert 'hx-target="#usage-report" hx-swap="outerHTML" hx-push-url="true"' in html
    assert f'hx-get="{USAGE_URL}?range=24h&amp;window=hour"' in html
    links = re.findall(r'href="(/accounts/[^"]+/usage/\?[^"]+)"', html)
    for link in {unescape(link) for link in links}:
        assert lead_client.get(link).status_code == 200, link


def test_it_lets_each_range_choose_its_window_until_one_is_asked_for(lead_client):
    html = lead_client.get(USAGE_URL + "?range=30d").text
    assert f'href="{USAGE_URL}?range=24h"' in html
    assert chart_data(lead_client.get(USAGE_URL + "?range=24h").text)["unit"] == "hour"


def test_it_answers_an_htmx_request_with_the_report_alone(lead_client):
    response = lead_client.get(USAGE_URL + "?range=30d", headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="usage-report"')
    assert "<html" not in response.text and "<h1>" not in response.text
    # htmx drops script elements from a swapped fragment, but not from a template's content.
    assert '<template id="usage-chart-data"><script id="usage-data"' in response.text
    assert "HX-Request" in response["Vary"]


def test_it_answers_a_normal_request_with_the_full_page(lead_client):
    response = lead_client.get(USAGE_URL)
    assert "<html" in response.text and 'id="usage-report"' in response.text
    assert "HX-Request" in response["Vary"]
    assert "/static/vendor/chart-4.6.1.umd.min.js" in response.text
    assert "/static/js/usage.js" in response.text


def test_it_answers_an_htmx_history_restore_with_the_full_page(lead_client):
    headers = {"HX-Request": "true", "HX-History-Restore-Request": "true"}
    response = lead_client.get(USAGE_URL, headers=headers)
    assert "<html" in response.text


def test_it_names_the_reporting_zone_and_adds_hours_into_local_days(lead_client, sim, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    html = lead_client.get(USAGE_URL + "?range=7d").text
    assert "Times in Europe/Berlin." in html
    assert "Days run from midnight to midnight in Europe/Berlin" in html
    assert sim.calls["GET usage-history"] == 1  # 7 days of hours: one call
    first = table_rows(html)[0]
    # Wednesday in Berlin is 22:00 UTC Tuesday to 22:00 UTC Wednesday.
    spent = cents_between(
        sim, datetime(2026, 6, 2, 22, tzinfo=UTC), datetime(2026, 6, 3, 22, tzinfo=UTC)
    )
    assert spent == Decimal("265.3789")
    assert first == ("Wed 3 Jun 2026", "$265.38")


def test_it_labels_hours_in_the_reporting_zone(lead_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    html = lead_client.get(USAGE_URL + "?range=24h").text
    assert table_rows(html)[0][0] == "Tue 9 Jun 2026, 14:00"


def test_it_says_when_days_are_utc_days(lead_client, settings):
    settings.TIME_ZONE = "Asia/Kolkata"
    html = lead_client.get(USAGE_URL + "?range=7d").text
    assert "Days are UTC days, labelled with their UTC date" in html
    assert "times in UTC</caption>" in html


def test_it_splits_long_hourly_ranges_into_parallel_calls(lead_client, sim, settings):
    settings.BILLING_PAGE_DEADLINE = SAFETY_TIMEOUT  # a safety bound: the page waits for all
    hold(sim, "GET usage-history")
    # Each call is held until all three are out side by side.
    with ReleaseWhenInFlight(sim, {"GET usage-history": 3}) as watch:
        response = lead_client.get(USAGE_URL + "?range=90d&window=hour")
    assert watch.all_at_once
    assert response.status_code == 200
    assert sim.calls["GET usage-history"] == 3
    values = chart_data(response.text)["values"]
    # 90 local days from 13 March 00:00 to 12:00 today, every hour once.
    assert len(values) == 89 * 24 + 12


def test_it_shares_cached_answers_between_viewers(lead_client, finance_client, sim):
    lead_client.get(USAGE_URL + "?range=30d")
    finance_client.get(USAGE_URL + "?range=30d")
    assert sim.calls["GET usage-history"] == 1


def test_it_says_when_there_is_no_usage_in_the_range(lead_client):
    html = lead_client.get(USAGE_URL + "?range=custom&start=2026-01-01&end=2026-01-31").text
    assert "No usage in this range." in html
    assert_no_report(html)


def test_it_cuts_a_future_end_date_at_now(lead_client):
    response = lead_client.get(USAGE_URL + "?range=custom&start=2026-06-08&end=2027-01-01")
    assert response.status_code == 200
    assert "8 Jun 2026 to 10 Jun 2026 (to the end of the last complete hour)" in response.text


def test_it_links_the_page_in_the_navigation(lead_client):
    html = lead_client.get(f"/accounts/{ACCOUNT_ID}/").text
    assert f'<a href="{USAGE_URL}"' in html
    assert f'<a href="{USAGE_URL}" aria-current="page">Usage</a>' in lead_client.get(USAGE_URL).text


def test_it_sends_no_inline_script_or_style(lead_client):
    response = lead_client.get(USAGE_URL)
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert " style=" not in response.text
    assert "<script>" not in response.text
    scripts = re.findall(r"<script[^>]*>", response.text)
    assert all('src="/static/' in s or 'type="application/json"' in s for s in scripts)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?window=week", "Choose day or hour buckets."),
        ("?range=1y", "Choose one of the ranges offered, or custom dates."),
        ("?range=custom&start=2026-13-45&end=2026-06-01", "Enter the start date as YYYY-MM-DD."),
        ("?range=custom&start=2026-06-01&end=yesterday", "Enter the end date as YYYY-MM-DD."),
        ("?range=custom&start=2026-06-05&end=2026-06-01", "The end date is before the start date."),
        ("?range=custom&start=2026-06-11&end=2026-06-12", "The range starts in the future."),
        ("?range=custom&start=2026-01-01&end=2026-06-01", "at most 93 days; this one spans 152"),
        ("?range=custom&start=2026-06-01", "Enter an end date for a custom range."),
        ("?end=2026-06-01", "Enter a start date for a custom range."),
        ("?range=custom&start=0001-01-01&end=0001-01-02", "Enter a start date in 2000 or later."),
        ("?range=custom&start=2026-06-01&end=9999-12-31", None),
        ("?start=%00&end=2026-06-01", "Enter the start date as YYYY-MM-DD."),
    ],
)
def test_it_refuses_bad_query_strings_with_the_form_and_its_errors(lead_client, query, message):
    response = lead_client.get(USAGE_URL + query)
    if message is None:  # a far-future end is cut at now, not refused
        assert response.status_code == 200
        return
    assert response.status_code == 400
    assert "<html" in response.text
    assert escape(message) in response.text
    assert '<form class="usage-custom"' in response.text
    assert 'role="alert"' in response.text
    assert_no_report(response.text)


def test_it_keeps_the_links_working_after_bad_input(lead_client):
    html = lead_client.get(USAGE_URL + "?window=week&range=30d").text
    assert f'href="{USAGE_URL}?range=24h"' in html
    assert f'href="{USAGE_URL}?range=30d&amp;window=hour"' in html


def test_it_refuses_bad_input_on_a_fragment_with_400(lead_client):
    response = lead_client.get(
        USAGE_URL + "?range=custom&start=2026-06-05&end=2026-06-01", headers=HTMX
    )
    assert response.status_code == 400
    assert response.text.lstrip().startswith('<section id="usage-report"')
    assert escape("The end date is before the start date.") in response.text
    assert "HX-Request" in response["Vary"]


def test_it_refuses_a_post(lead_client):
    assert lead_client.post(USAGE_URL).status_code == 405


# ---------------------------------------------------------------- Cloudflare failing

FAULTS = [
    ("error", {"status": 500}, "Cloudflare's billing service is having trouble."),
    ("error", {"status": 503}, "Cloudflare's billing service is having trouble."),
    ("rate_limit", {"retry_after": 300}, "limiting how often we may ask"),
    ("hang", {}, "took too long to answer"),
    ("malformed", {}, "sent an answer we could not read"),
    ("unsuccessful", {}, "answered with an error"),
]


@pytest.mark.parametrize(("fault", "params", "message"), FAULTS)
def test_it_states_an_upstream_failure_in_the_report(lead_client, sim, fault, params, message):
    sim.set_fault("GET usage-history", fault, **params)
    response = lead_client.get(USAGE_URL)
    assert response.status_code == 200
    assert escape(message) in response.text
    assert "The figures for this range are incomplete" in response.text
    assert "Traceback" not in response.text
    assert_no_report(response.text)
    assert "Download CSV" not in response.text


@pytest.mark.parametrize(("fault", "params", "message"), FAULTS)
def test_it_states_an_upstream_failure_in_a_fragment(lead_client, sim, fault, params, message):
    sim.set_fault("GET usage-history", fault, **params)
    response = lead_client.get(USAGE_URL, headers=HTMX)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section id="usage-report"')
    assert escape(message) in response.text


def test_it_shows_nothing_when_one_chunk_of_many_fails(lead_client, sim):
    sim.set_fault("GET usage-history", "error", status=502, times=1)
    response = lead_client.get(USAGE_URL + "?range=90d&window=hour")
    assert response.status_code == 200
    assert sim.calls["GET usage-history"] == 3
    assert "The figures for this range are incomplete" in response.text
    assert_no_report(response.text)


def test_it_shows_the_last_good_figures_as_of_their_time_when_cloudflare_fails(
    lead_client, sim, settings
):
    settings.BILLING_CACHE_SECONDS = 0  # every request asks Cloudflare again
    first = lead_client.get(USAGE_URL).text
    sim.set_fault("GET usage-history", "error", status=502)
    response = lead_client.get(USAGE_URL)
    assert response.status_code == 200
    assert re.search(
        r"as of <time datetime=\"[^\"]+\">\d\d:\d\d</time>, Cloudflare is not answering",
        response.text,
    )
    assert escape("Cloudflare's billing service is having trouble.") in response.text
    assert table_rows(response.text) == table_rows(first)
    assert 'id="usage-chart"' in response.text


def test_it_says_when_cloudflare_is_too_slow_for_the_page(lead_client, sim, settings):
    # The page reads nothing but usage, whose calls cannot answer before they are released.
    settings.BILLING_PAGE_DEADLINE = 0.05
    hold(sim, "GET usage-history")
    response = lead_client.get(USAGE_URL)
    assert response.status_code == 200
    assert "Cloudflare has not answered yet" in response.text
    assert_no_report(response.text)
    # The read goes on in the background and fills the cache: let it end inside this test.
    sim.clear_faults()
    wait_for_background_reads()


def test_it_shows_no_hostile_text_from_cloudflare(lead_client, sim):
    sim.set_fault(
        "GET usage-history", "unsuccessful", message='<script>alert("usage")</script>', code=1000
    )
    response = lead_client.get(USAGE_URL)
    assert response.status_code == 200
    assert '<script>alert("usage")</script>' not in response.text
    assert response.text.count("<script") == response.text.count('<script src="/static/')


def test_it_draws_the_report_under_the_hostile_fault(lead_client, sim):
    sim.set_fault("GET usage-history", "hostile")
    response = lead_client.get(USAGE_URL)
    assert response.status_code == 200
    assert "<img" not in response.text
    assert len(chart_data(response.text)["values"]) == 7


# ---------------------------------------------------------------- CSV


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_it_exports_exactly_the_rows_shown(finance_client, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    query = "?range=7d&window=day"
    page = finance_client.get(USAGE_URL + query).text
    assert f'href="{CSV_URL}{query.replace("&", "&amp;")}"' in page
    response = finance_client.get(CSV_URL + query)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="usage-{ACCOUNT_ID}-2026-06-03-2026-06-09-day.csv"'
    )
    rows = read_csv(response.text)
    assert rows[0] == ["bucket_start (Europe/Berlin)", "bucket_start_utc", "spend_usd"]
    assert rows[1][:2] == ["2026-06-03T00:00:00+02:00", "2026-06-02T22:00:00Z"]
    shown = table_rows(page)
    assert len(rows) - 1 == len(shown)
    # Dollars as in the data in the file, to the cent on the page.
    assert [r[2] for r in rows[1:]] == [
        "265.3789",
        "287.1683",
        "271.0218",
        "100.4951",
        "95.1407",
        "230.8825",
        "266.162",
    ]
    assert [spend for _, spend in shown] == [
        "$265.38",
        "$287.17",
        "$271.02",
        "$100.50",
        "$95.14",
        "$230.88",
        "$266.16",
    ]
    assert finance_client.get(CSV_URL + query).content == response.content


def test_it_exports_hours(finance_client):
    response = finance_client.get(CSV_URL + "?range=24h")
    rows = read_csv(response.text)
    assert rows[1][:2] == ["2026-06-09T12:00:00+00:00", "2026-06-09T12:00:00Z"]
    assert len(rows) == 25
    assert response["Content-Disposition"].endswith('-2026-06-09-2026-06-10-hour.csv"')


def test_it_offers_the_csv_only_to_those_who_may_export(lead_client, finance_client):
    assert "Download CSV" not in lead_client.get(USAGE_URL).text
    assert lead_client.get(CSV_URL).status_code == 403
    assert "Download CSV" in finance_client.get(USAGE_URL).text


def test_it_refuses_a_csv_of_bad_input(finance_client):
    response = finance_client.get(CSV_URL + "?window=week")
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "Choose day or hour buckets." in response.text


def test_it_makes_no_partial_csv_when_cloudflare_fails(finance_client, sim):
    sim.set_fault("GET usage-history", "error", status=500, times=1)
    response = finance_client.get(CSV_URL + "?range=90d&window=hour")
    assert response.status_code == 503
    assert "The export was not made" in response.text
    assert "Content-Disposition" not in response
