"""Money as people read it: ``{{ amount|usd }}`` gives "$1,234.56" or "−$3.20"."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template

register = template.Library()

CENT = Decimal("0.01")
# A true minus sign: a hyphen is easy to miss next to a dollar sign, and screen readers say it.
MINUS = "\u2212"


def format_usd(amount: Decimal | int | str) -> str:
    """US dollars rounded half-up to the cent, thousands grouped, the sign before the "$"."""
    value = Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)
    sign = MINUS if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


@register.filter(name="usd")
def usd(amount: object) -> str:
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        return ""
    try:
        return format_usd(amount)
    except (InvalidOperation, ValueError):
        return ""
