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

    # Permissions are normally made after all migrations (post_migrate); the groups need
    # them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        # Filter: an early migration runs before later permissions exist (the latest syncs again).
        perms = list(
            Permission.objects.filter(content_type__app_label="dashboard", codename__in=codenames)
        )
        if name == BILLING_ADMIN:
            for app_label, codename in ADMIN_AUTH_PERMISSIONS:
                perms.extend(
                    Permission.objects.filter(content_type__app_label=app_label, codename=codename)
                )
        group.permissions.set(perms)
