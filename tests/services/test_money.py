"""Money reads the same wherever it is shown: pages, emails and alert texts alike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dashboard.models import AlertRule
from dashboard.services import alerts, money
from dashboard.services.money import format_usd
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


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("1234.5", "usd", "$1,234.50"),
        ("1234.5", "USD", "$1,234.50"),
        ("-3.2", "usd", "\u2212$3.20"),
        ("0.005", "usd", "$0.01"),
        ("1234.5", "eur", "1,234.50 EUR"),
        ("-3.2", "gbp", "\u22123.20 GBP"),
        ("7", "", "7.00 ?"),
    ],
)
def test_it_formats_money_with_its_currency(amount, currency, text):
    assert money.format_money(Decimal(amount), currency) == text


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        ("0.000005", "usd", "$0.000005"),
        ("0.0000012345678", "usd", "$0.000001235"),
        ("0.5", "usd", "$0.50"),
        ("12.3456", "usd", "$12.35"),
        ("1234.5678", "usd", "$1,234.57"),
        ("0", "usd", "$0.00"),
        ("0.0003", "eur", "0.0003 EUR"),
    ],
)
def test_it_formats_unit_prices_to_four_significant_digits(amount, currency, text):
    assert money.format_unit_price(Decimal(amount), currency) == text


@pytest.mark.parametrize(
    ("quantity", "text"),
    [("1990000000", "1,990,000,000"), ("1E+3", "1,000"), ("12.50", "12.5"), ("0", "0")],
)
def test_it_formats_quantities(quantity, text):
    assert money.format_quantity(Decimal(quantity)) == text
