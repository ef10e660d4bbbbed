"""The views, one module per page (overview, usage, invoices); each checks its permission."""

from __future__ import annotations

from dashboard.views.overview import all_accounts, home, overview

__all__ = ["all_accounts", "home", "overview"]
