"""Money and billing periods as people read them, one way for pages, emails and CSVs alike:
"$1,234.56" or "−$3.20" (rounded half up to the cent), "1,234.56 EUR" for another currency,
and "1–30 Nov 2026"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# A true minus sign: a hyphen is easy to miss next to a dollar sign, and screen readers say it.
MINUS = "\u2212"


def format_usd(amount: Decimal | int | str) -> str:
    """US dollars rounded half-up to the cent, thousands grouped, the sign before the "$"."""
    value = Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)
    sign = MINUS if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def format_period(start: datetime, end: datetime) -> str:
    """A billing period as inclusive dates: "1–30 Nov 2026", "15 Nov – 14 Dec 2026". Cloudflare's
    ``end`` is the first moment of the next period: the last day shown is the one before it. Days
    are UTC days: Cloudflare bills by UTC month (in another zone a period would seem to start on
    the last day of the month before)."""
    first = start.astimezone(UTC).date()
    last = max(first, (end.astimezone(UTC) - timedelta(microseconds=1)).date())
    if first == last:
        return f"{last.day} {last:%b %Y}"
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{last.day} {last:%b %Y}"
    if first.year == last.year:
        return f"{first.day} {first:%b} – {last.day} {last:%b %Y}"
    return f"{first.day} {first:%b %Y} – {last.day} {last:%b %Y}"


def format_money(amount: Decimal, currency: str | None) -> str:
    """ "$1,234.56" for US dollars; "1,234.56 EUR" for anything else (never a "$")."""
    if _is_usd(currency):
        return format_usd(amount)
    return _with_code(amount.quantize(CENT, rounding=ROUND_HALF_UP), currency)


def format_unit_price(amount: Decimal, currency: str | None) -> str:
    """A price per unit to four significant digits (token prices are fractions of a cent)."""
    if amount == 0:
        return format_money(amount, currency)
    exponent = min(amount.adjusted() - 3, -2)
    value = amount.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP).normalize()
    if value == value.quantize(CENT):
        value = value.quantize(CENT)  # at least cents: "$0.50", not "$0.5"
    sign = MINUS if value < 0 else ""
    if _is_usd(currency):
        return f"{sign}${abs(value):,f}"
    return _with_code(value, currency)


def format_quantity(quantity: Decimal) -> str:
    return f"{quantity.normalize():,f}"


def currency_code(currency: str | None) -> str:
    return (currency or "").strip().upper() or "?"


def _is_usd(currency: str | None) -> bool:
    return (currency or "").strip().lower() == "usd"


def _with_code(value: Decimal, currency: str | None) -> str:
    sign = MINUS if value < 0 else ""
    return f"{sign}{abs(value):,f} {currency_code(currency)}"
