"""Give the roles the permissions dashboard.roles now lists (the audit log, for admins)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from dashboard.roles import sync_roles


def forwards(apps: Any, schema_editor: Any) -> None:
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0003_audit_log")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
