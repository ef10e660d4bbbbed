"""Create the three roles as groups with their permissions."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from dashboard.roles import ROLE_PERMISSIONS, sync_roles


def create_roles(apps: Any, schema_editor: Any) -> None:
    sync_roles(apps)


def remove_roles(apps: Any, schema_editor: Any) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_roles_and_account_access"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
