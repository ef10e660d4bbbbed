"""Top-ups are followed up by the worker until they settle; those waiting already are too."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.utils import timezone


def follow_up_waiting(apps: Any, schema_editor: Any) -> None:
    # Top-ups left pending or unknown before the worker followed them up: ask at once.
    Topup = apps.get_model("dashboard", "Topup")
    Topup.objects.filter(status__in=["pending", "unknown"]).update(follow_up_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0011_digest_to_own_address"),
    ]

    operations = [
        migrations.AddField(
            model_name="topup",
            name="follow_up_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AddField(
            model_name="topup",
            name="follow_up_claimed_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="topup",
            name="follow_up_note",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="topup",
            name="follow_ups",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.RunPython(follow_up_waiting, migrations.RunPython.noop),
    ]
