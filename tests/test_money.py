"""Money reads the same wherever it is shown: pages, emails and alert texts alike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from dashboard.models import AlertRule
from dashboard.money import format_usd
from dashboard.services import alerts
from dashboard.templatetags.money import usd


def test_it_rounds_half_a_cent_up_on_pages():
    assert format_usd(Decimal("2.345")) == "$2.35"
    assert usd(Decimal("1234.565")) == "$1,234.57"
    assert usd(Decimal("-3.2")) == "\u2212$3.20"


def test_an_alert_rounds_and_signs_money_as_the_pages_do():
    rule = AlertRule(account_id="a" * 32, kind=AlertRule.Kind.AUTO_TOPUP_CAP, amount=Decimal(50))
    at = datetime(2026, 6, 10, tzinfo=UTC)
    reading = alerts.Reading(at=at, auto_topups_this_month=Decimal("50.125"))
    verdict = alerts.judge(rule, reading)
    # 50.125 is $50.13 on a page (half up); Python's own format would say $50.12.
    assert (
        verdict.message == "Automatic top-ups this month came to $50.13, reaching the $50.00 cap."
    )
