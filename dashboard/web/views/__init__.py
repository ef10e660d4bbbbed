"""The views, one module per page (overview, usage, invoices); each checks its permission."""

from __future__ import annotations

from dashboard.web.views.activity import activity, activity_csv
from dashboard.web.views.alerts import alert_rule, alert_rule_delete, alerts
from dashboard.web.views.digest import digest
from dashboard.web.views.invoices import invoices
from dashboard.web.views.overview import all_accounts, home, overview
from dashboard.web.views.rules import (
    auto_topup,
    auto_topup_delete,
    spending_limit,
    spending_limit_delete,
)
from dashboard.web.views.topups import topup_check, topup_create, topup_status, topups
from dashboard.web.views.usage import usage, usage_csv

__all__ = [
    "activity",
    "activity_csv",
    "alert_rule",
    "alert_rule_delete",
    "alerts",
    "all_accounts",
    "auto_topup",
    "auto_topup_delete",
    "digest",
    "home",
    "invoices",
    "overview",
    "spending_limit",
    "spending_limit_delete",
    "topup_check",
    "topup_create",
    "topup_status",
    "topups",
    "usage",
    "usage_csv",
]
