"""The views, one module per page (overview, usage, invoices); each checks its permission."""

from __future__ import annotations

from dashboard.views.invoices import invoices
from dashboard.views.overview import all_accounts, home, overview
from dashboard.views.usage import usage, usage_csv

__all__ = ["all_accounts", "home", "invoices", "overview", "usage", "usage_csv"]
