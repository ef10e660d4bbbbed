from __future__ import annotations

import os

from django.apps import AppConfig
from django.conf import settings


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "AI Gateway spend"

    def ready(self) -> None:
        # Connects the receiver that drops built clients when billing settings change.
        from dashboard.infra import billing  # noqa: F401

        # `make run`: the alerts worker in a thread of the autoreloader's child (RUN_MAIN).
        if settings.ALERTS_IN_PROCESS and os.environ.get("RUN_MAIN") == "true":
            from dashboard import tasks

            tasks.start_in_process()
