"""Template filters over :mod:`dashboard.services.money`: ``{{ amount|usd }}`` gives "$1,234.56" or
"−$3.20"; ``{{ start|period:end }}`` gives "1–30 Nov 2026"."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django import template

from dashboard.services.money import format_period, format_usd

register = template.Library()


@register.filter
def usd(amount: object) -> str:
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        return ""
    try:
        return format_usd(amount)
    except (InvalidOperation, ValueError):
        return ""


@register.filter
def period(start: object, end: object) -> str:
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return ""
    return format_period(start, end)
