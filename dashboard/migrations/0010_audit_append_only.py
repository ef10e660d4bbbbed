"""The audit log is append-only in the database itself, not only in the model's Python.

A trigger refuses every UPDATE and DELETE of an event, whoever runs it (a bulk queryset, a
shell, raw SQL). One UPDATE is let through: the one Django runs when a user is deleted
(``on_delete=SET_NULL``), which sets ``user_id`` to NULL and changes nothing else; the event
keeps the user's name as written.

TRUNCATE is not refused: Django's ``flush`` (and so every transactional test) empties the
tables with it, and only the table's owner may run it.

On SQLite a later migration that rebuilds this table drops its triggers: it must create them
again (tests/test_audit.py applies every migration to SQLite and would fail).
"""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

TABLE = "dashboard_auditevent"
MESSAGE = f"{TABLE} is append-only: events are never changed or deleted"

POSTGRESQL_FORWARDS = [
    f"""
    CREATE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- Every column but user_id, compared whole: a column added later is guarded too.
        IF TG_OP = 'UPDATE' AND NEW.user_id IS NULL
                AND to_jsonb(NEW) - 'user_id' = to_jsonb(OLD) - 'user_id' THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION '{MESSAGE} (% refused)', TG_OP USING ERRCODE = 'restrict_violation';
    END;
    $$
    """,
    f"""
    CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()
    """,
]
POSTGRESQL_BACKWARDS = [
    f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}",
    f"DROP FUNCTION IF EXISTS {TABLE}_append_only()",
]
SQLITE_BACKWARDS = [
    f"DROP TRIGGER IF EXISTS {TABLE}_no_update",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_delete",
]


def sqlite_forwards(columns: list[str]) -> list[str]:
    """SQLite has no row-to-JSON, so the unchanged columns are named one by one."""
    unchanged = " AND ".join(f'NEW."{c}" IS OLD."{c}"' for c in columns if c != "user_id")
    return [
        f"""
        CREATE TRIGGER {TABLE}_no_update BEFORE UPDATE ON {TABLE}
        WHEN NOT (NEW.user_id IS NULL AND {unchanged})
        BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END
        """,
        f"""
        CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END
        """,
    ]


def forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = POSTGRESQL_FORWARDS
    elif vendor == "sqlite":
        model = apps.get_model("dashboard", "AuditEvent")
        statements = sqlite_forwards([field.column for field in model._meta.concrete_fields])
    else:
        return
    for statement in statements:
        schema_editor.execute(statement, params=None)


def backwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    statements = {"postgresql": POSTGRESQL_BACKWARDS, "sqlite": SQLITE_BACKWARDS}
    for statement in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0009_delivery_attempts")]

    operations = [migrations.RunPython(forwards, backwards)]
