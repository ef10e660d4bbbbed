from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "AI Gateway spend"

    def ready(self) -> None:
        # Connects the receiver that drops built clients when billing settings change.
        from dashboard import authcache, billing  # noqa: F401

        # Every change of a user, group, permission or grant ends the cached snapshots.
        authcache.connect()
