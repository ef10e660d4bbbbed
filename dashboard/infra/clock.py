"""The dashboard's "now", in one place.

Computations that depend on the present (runway, month to date, usage ranges) ask here, so
that tests can stand at the moment where the simulator's clock is frozen.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    return timezone.now()
