"""One definition per figure (dashboard/services/figures.py), the same on every surface.

The simulator's clock stands on Wednesday 10 June 2026, 12:30 UTC (the reporting zone). The
expected figures are summed here from Cloudflare's hourly answer over spans written out by
hand; then every page, export and email that shows a figure must show the same to the cent,
labelled with the same span.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives

from dashboard.infra import billing
from dashboard.models import AlertRule, DigestSubscription
from dashboard.services import alerts, digest, figures, runway
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID
from tests.services.test_notify import deliver_due

pytestmark = pytest.mark.usefixtures("frozen_clock")

CENT = Decimal("0.01")
# The last complete hour ends at 12:00; today (10 Jun) is not a complete day.
END = datetime(2026, 6, 10, 12, tzinfo=UTC)
MIDNIGHT = datetime(2026, 6, 10, tzinfo=UTC)
BURN_7D_SPAN = "3–9 Jun, complete days, UTC"
BURN_30D_SPAN = "11 May–9 Jun, complete days, UTC"
MTD_SPAN = "1 Jun 00:00–10 Jun 12:00, UTC"
LAST_24H_SPAN = "9 Jun 12:00–10 Jun 12:00, UTC"
DIGEST_WEEK_SPAN = "1–7 Jun, complete days, UTC"


def spent(account_id: str, start: datetime, end: datetime) -> Decimal:
    """Spend of the hours in ``[start, end)``, straight from Cloudflare's hourly answer."""
    history = billing.client_for(account_id).usage_history("hour", start, end)
    return sum(
        (b.aggregated_value for b in history.history if start <= b.start_time < end), Decimal(0)
    )


def expected(account_id: str) -> dict[str, Decimal]:
    days = timedelta(days=1)
    return {
        "burn-7d": spent(account_id, MIDNIGHT - 7 * days, MIDNIGHT) / 7,
        "burn-30d": spent(account_id, MIDNIGHT - 30 * days, MIDNIGHT) / 30,
        "mtd": spent(account_id, datetime(2026, 6, 1, tzinfo=UTC), END),
        "last-24h": spent(account_id, END - days, END),
        "week": spent(
            account_id, datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC)
        ),
    }


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT)


def dollars(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


def shown(html: str, key: str) -> list[Decimal]:
    """Every dollar figure marked ``data-figure="key"`` in ``html``."""
    found = re.findall(rf'data-figure="{key}"[^>]*>\s*(-?\$[\d,]+\.\d\d)', html)
    return [dollars(text) for text in found]


def one(html: str, key: str) -> Decimal:
    values = shown(html, key)
    assert len(values) >= 1, f"no {key} figure shown"
    assert len(set(values)) == 1, f"{key} shown as {values}"
    return values[0]


def test_it_shows_every_figure_the_same_on_every_surface(client, finance, admin_client, settings):
    settings.DASHBOARD_URL = "https://spend.example.com"
    client.force_login(finance)
    want = {key: cents(value) for key, value in expected(ACCOUNT_ID).items()}

    overview = client.get(f"/accounts/{ACCOUNT_ID}/").text
    for key in ("burn-7d", "burn-30d", "mtd"):
        assert one(overview, key) == want[key], key
    for span in (BURN_7D_SPAN, BURN_30D_SPAN, MTD_SPAN):
        assert span in overview

    usage_url = f"/accounts/{ACCOUNT_ID}/usage/"
    usage = client.get(usage_url).text  # the default range: the last 7 days
    assert one(usage, "burn-7d") == want["burn-7d"]
    assert BURN_7D_SPAN in usage
    assert one(client.get(usage_url + "?range=30d").text, "burn-30d") == want["burn-30d"]
    month = client.get(usage_url + "?range=mtd").text
    assert one(month, "mtd") == want["mtd"] and MTD_SPAN in month
    day = client.get(usage_url + "?range=24h").text
    assert one(day, "last-24h") == want["last-24h"] and LAST_24H_SPAN in day

    export = client.get(f"/accounts/{ACCOUNT_ID}/usage.csv")
    assert export.status_code == 200, export.content
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    assert len(rows) == 8  # a header and the 7 complete days
    assert cents(sum((Decimal(row[-1]) for row in rows[1:]), Decimal(0)) / 7) == want["burn-7d"]

    everyone = client.get("/accounts/").text
    production = re.search(
        r"<tr>\s*<th scope=\"row\"><a [^>]*>Production</a>.*?</tr>", everyone, re.S
    )
    assert production is not None
    assert one(production.group(0), "burn-7d") == want["burn-7d"]
    assert one(production.group(0), "mtd") == want["mtd"]
    assert BURN_7D_SPAN in everyone and MTD_SPAN in everyone

    # Alerts: the rules judge the same figures, and say so on the page and in the email.
    for kind, values in (
        (AlertRule.Kind.MONTH_TO_DATE_ABOVE, {"amount": Decimal(1)}),
        (AlertRule.Kind.SPEND_SPIKE, {"factor": Decimal("1.01")}),
    ):
        AlertRule.objects.create(
            account_id=ACCOUNT_ID, kind=kind, emails="f@example.com", created_by="t", **values
        )
    alerts.check_all()
    deliver_due()
    page = admin_client.get(f"/accounts/{ACCOUNT_ID}/alerts/").text  # a Billing admin's page
    seen = re.search(r"Month-to-date spend (\$[\d,]+\.\d\d) over ([^<]*?)<", page)
    assert seen is not None and dollars(seen.group(1)) == want["mtd"]
    assert seen.group(2).strip() == MTD_SPAN
    money = r"(\$[\d,]+\.\d\d)"
    spike = re.search(
        rf"Last 24 hours {money} over ([^;]*); burn {money} per day over ([^<]*?)<", page
    )
    assert spike is not None, "the spike rule shows no figures"
    assert dollars(spike.group(1)) == want["last-24h"] and spike.group(2) == LAST_24H_SPAN
    assert dollars(spike.group(3)) == want["burn-7d"] and spike.group(4).strip() == BURN_7D_SPAN
    bodies = "\n".join(str(m.body) for m in mail.outbox)
    said = re.search(r"so far is (\$[\d,]+\.\d\d) \(over ([^)]*)\)", bodies)
    assert said is not None and dollars(said.group(1)) == want["mtd"]
    assert said.group(2) == MTD_SPAN

    # The digest's week is a stated span; its link shows that span on Usage, same total.
    mail.outbox.clear()
    DigestSubscription.objects.create(user=finance)
    assert digest.send_due() == 1
    message = mail.outbox[0]
    assert isinstance(message, EmailMultiAlternatives)
    content = message.alternatives[0][0]
    assert isinstance(content, str)
    section = re.search(r">Production</h2>(.*?)(?:<h2|$)", content, re.S)
    assert section is not None
    html = section.group(1)
    body = message.body.split("== Production ==")[1].split("==")[0]
    assert one(html, "burn-7d") == want["burn-7d"] and BURN_7D_SPAN in html
    assert one(html, "week") == want["week"] and DIGEST_WEEK_SPAN in html
    burn = re.search(r"Burn: (\$[\d,]+\.\d\d) per day over (.*)", body)
    assert burn is not None and dollars(burn.group(1)) == want["burn-7d"]
    assert burn.group(2).strip() == BURN_7D_SPAN
    link = re.search(rf"https://spend\.example\.com(/accounts/{ACCOUNT_ID}/usage/\?[^\s\"]+)", body)
    assert link is not None, "the digest links to its week on Usage"
    week_page = client.get(link.group(1).replace("&amp;", "&")).text
    assert one(week_page, "total") == want["week"]
    assert DIGEST_WEEK_SPAN in week_page


def test_it_dates_the_runway_the_same_on_the_overview_and_all_accounts(client, finance):
    # Research has no card and no auto top-up: its balance runs out.
    client.force_login(finance)
    overview = client.get(f"/accounts/{OTHER_ACCOUNT_ID}/").text
    everyone = client.get("/accounts/").text
    dated = re.findall(r'<time datetime="([\d-]+)" data-figure="runway">', overview)
    listed = re.findall(r'<time datetime="([\d-]+)" data-figure="runway">', everyone)
    assert dated and dated[0] in listed
    assert BURN_7D_SPAN in overview


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("first", "last", "label"),
    [
        (date(2026, 12, 6), date(2026, 12, 6), "6 Dec"),
        (date(2026, 12, 1), date(2026, 12, 7), "1–7 Dec"),
        (date(2026, 11, 30), date(2026, 12, 6), "30 Nov–6 Dec"),
        (date(2026, 12, 28), date(2027, 1, 3), "28 Dec 2026–3 Jan 2027"),
    ],
)
def test_it_names_a_run_of_days_briefly(first, last, label):
    assert figures.days_label(first, last) == label


def test_it_labels_a_rate_with_its_complete_days_and_zone():
    berlin = ZoneInfo("Europe/Berlin")
    # Monday 7 December, 20:30 in Berlin: today is not a complete day.
    now = datetime(2026, 12, 7, 19, 30, tzinfo=UTC)
    span = figures.last_complete_days(7, now, berlin)
    assert (span.start, span.end) == (
        datetime(2026, 11, 29, 23, tzinfo=UTC),
        datetime(2026, 12, 6, 23, tzinfo=UTC),
    )
    burn = figures.Figure("burn-7d", Decimal("232.75"), span, per_day=True)
    assert burn.label == "per day over 30 Nov–6 Dec, complete days, Europe/Berlin"


def test_it_labels_the_last_24_hours_up_to_the_last_complete_hour():
    now = datetime(2026, 12, 7, 20, 45, tzinfo=UTC)
    figure = figures.last_24h(runway.Hours.of([]), now, UTC)
    assert figure.value == 0
    assert figure.label == "over 6 Dec 20:00–7 Dec 20:00, UTC"
