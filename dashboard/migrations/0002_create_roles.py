"""Create the three roles as groups with their permissions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

from dashboard.roles import ADMIN_AUTH_PERMISSIONS, ROLE_PERMISSIONS


def create_roles(apps: Any, schema_editor: Any) -> None:
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
        perms = list(
            Permission.objects.filter(content_type__app_label="dashboard", codename__in=codenames)
        )
        if len(perms) != len(codenames):
            raise RuntimeError(f"missing dashboard permissions for {name}")
        if name == "Billing admin":
            for app_label, codename in ADMIN_AUTH_PERMISSIONS:
                perms.append(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )
        group.permissions.set(perms)


def remove_roles(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_roles_and_account_access"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
