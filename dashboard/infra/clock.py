"""The dashboard's "now", in one place: what depends on the present (runway, month to date,
usage ranges) asks here, so that tests can stand where the simulator's clock is frozen."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
