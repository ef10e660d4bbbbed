"""The roles: Django groups and the dashboard permissions each holds (made by migrations;
checked in each view, never only in a template)."""

from __future__ import annotations

from typing import Any

TEAM_LEAD = "Team lead"
FINANCE = "Finance"
BILLING_ADMIN = "Billing admin"

_READ = ["view_overview", "view_usage"]
_FINANCE = [
    *_READ,
    "view_invoices",
    "view_topups",
    "export_data",
    "create_topup",
    "view_activity",
]

#: Group name -> codenames of the ``dashboard`` app's permissions.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    TEAM_LEAD: _READ,
    FINANCE: _FINANCE,
    BILLING_ADMIN: [*_FINANCE, "change_auto_topup", "change_spending_limit", "manage_alerts"],
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
    ("dashboard", "view_auditevent"),
]


def sync_roles(apps: Any) -> None:
    """Make the groups hold exactly the permissions above (used by migrations)."""
    from django.contrib.auth.management import create_permissions

    # Permissions are made after all migrations (post_migrate); the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    # Of those that exist: an early migration runs before later ones (the latest syncs again).
    existing = list(Permission.objects.select_related("content_type"))
    for name, codenames in ROLE_PERMISSIONS.items():
        wanted = {("dashboard", codename) for codename in codenames}
        if name == BILLING_ADMIN:
            wanted |= set(ADMIN_AUTH_PERMISSIONS)
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            [p for p in existing if (p.content_type.app_label, p.codename) in wanted]
        )
