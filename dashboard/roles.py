"""The roles: Django groups and the dashboard permissions each holds.

Used by the migration that creates the groups and by the demo users; the permissions are
checked in each view, never only in a template.
"""

from __future__ import annotations

TEAM_LEAD = "Team lead"
FINANCE = "Finance"
BILLING_ADMIN = "Billing admin"

_READ = ["view_overview", "view_usage"]
_FINANCE = [*_READ, "view_invoices", "view_topups", "export_data", "create_topup"]

#: Group name -> codenames of the ``dashboard`` app's permissions.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    TEAM_LEAD: _READ,
    FINANCE: _FINANCE,
    BILLING_ADMIN: [*_FINANCE, "change_auto_topup", "change_spending_limit"],
}
#: Billing admins manage users (and their roles and accounts) in Django's admin.
ADMIN_AUTH_PERMISSIONS = [
    ("auth", "view_user"),
    ("auth", "add_user"),
    ("auth", "change_user"),
    ("auth", "view_group"),
    ("dashboard", "view_accountaccess"),
    ("dashboard", "add_accountaccess"),
    ("dashboard", "change_accountaccess"),
    ("dashboard", "delete_accountaccess"),
]
