"""How each alert rule judges what a check saw (dashboard/services/alerts.py), without I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dashboard.models import AlertRule
from dashboard.services.alerts import Reading, judge

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)
Kind = AlertRule.Kind


def rule(kind: str, **values: object) -> AlertRule:
    return AlertRule(account_id="a" * 32, kind=kind, **values)


def state(rule: AlertRule, **figures: object) -> str:
    return judge(rule, Reading(at=NOW, **figures)).state  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("balance", "expected"),
    [
        ("49.99", "true"),
        ("50.00", "between"),  # not below: no new episode; not 10 % above: not cleared
        ("54.99", "between"),
        ("55.00", "clear"),
        ("-3.00", "true"),
    ],
)
def test_balance_below_has_a_margin_before_it_clears(balance: str, expected: str) -> None:
    assert state(rule(Kind.BALANCE_BELOW, amount=Decimal(50)), balance=Decimal(balance)) == (
        expected
    )


@pytest.mark.parametrize(
    ("spent", "expected"),
    [("1000.01", "true"), ("1000.00", "between"), ("900.01", "between"), ("900.00", "clear")],
)
def test_month_to_date_above_has_a_margin_before_it_clears(spent: str, expected: str) -> None:
    kept = rule(Kind.MONTH_TO_DATE_ABOVE, amount=Decimal(1000))
    assert state(kept, month_to_date=Decimal(spent)) == expected


def test_runway_below_counts_days_and_a_refilled_balance_clears() -> None:
    kept = rule(Kind.RUNWAY_BELOW, days=7)
    assert state(kept, runway_known=True, runway_days=Decimal("6.9")) == "true"
    assert state(kept, runway_known=True, runway_days=Decimal("7.5")) == "between"
    assert state(kept, runway_known=True, runway_days=Decimal("7.7")) == "clear"
    assert state(kept, runway_known=True, runway_days=Decimal(0)) == "true"  # overdrawn
    # Not running out (no spend, or auto top-up refills it): clear.
    assert state(kept, runway_known=True, runway_days=None) == "clear"
    # No complete day of usage yet: no forecast to judge.
    assert state(kept, runway_known=False) == "unknown"


def test_auto_topup_failed_or_off_is_true_until_it_works_again() -> None:
    kept = rule(Kind.AUTO_TOPUP_FAILED)
    failed = judge(kept, Reading(at=NOW, auto_topup_problem="Auto top-up failed: declined"))
    assert failed.state == "true"
    assert failed.subject == "Auto top-up failed"
    assert "declined" in failed.message
    assert state(kept, auto_topup_problem="Auto top-up is off.") == "true"
    assert state(kept, auto_topup_problem="") == "clear"
    assert state(kept) == "unknown"


@pytest.mark.parametrize(
    ("last_day", "expected"),
    [("301", "true"), ("300", "between"), ("271", "between"), ("270", "clear")],
)
def test_a_spike_is_k_times_the_daily_average(last_day: str, expected: str) -> None:
    kept = rule(Kind.SPEND_SPIKE, factor=Decimal(3))
    seen = judge(kept, Reading(at=NOW, last_day=Decimal(last_day), burn_week=Decimal(100)))
    assert seen.state == expected
    if expected == "true":
        assert "3.0 times" in seen.message and seen.facts["ratio"] == "3.01"


def test_a_spike_cannot_be_judged_against_nothing() -> None:
    kept = rule(Kind.SPEND_SPIKE, factor=Decimal(3))
    assert state(kept, last_day=Decimal(5), burn_week=Decimal(0)) == "between"
    assert state(kept) == "unknown"  # not 15 days of history


def test_a_figure_that_could_not_be_read_is_not_judged() -> None:
    seen = judge(
        rule(Kind.BALANCE_BELOW, amount=Decimal(50)),
        Reading(at=NOW, problems=("balance: Cloudflare is not answering",)),
    )
    assert seen.state == "unknown"
    assert "Cloudflare is not answering" in seen.seen


def test_what_fires_says_what_it_saw() -> None:
    seen = judge(rule(Kind.BALANCE_BELOW, amount=Decimal(50)), Reading(at=NOW, balance=Decimal(12)))
    assert seen.subject == "Balance below $50.00"
    assert seen.message == "The balance is $12.00, below the $50.00 this alert watches for."
    assert seen.facts == {"value": "12", "threshold": "50"}
