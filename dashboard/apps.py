from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "AI Gateway spend"

    def ready(self) -> None:
        # Connects the receiver that drops built clients when billing settings change.
        from dashboard import billing  # noqa: F401
