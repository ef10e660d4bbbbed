"""The two steps of a top-up as a browser sends them, for tests that need a charge made."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.test import Client

CONFIRMATION = re.compile(r'name="confirmation" value="([^"]*)"')


def confirm_data(
    client: Client, url: str, amount: str, key: str = "", **extra: Any
) -> dict[str, str]:
    """Posts ``amount`` (the first step), then returns what its confirmation sends back.

    ``amount`` is kept as typed; an amount the first step refused has no confirmation, so
    the returned data is a confirm the form refuses again (and records as invalid).
    """
    data = {"amount": amount, "idempotency_key": key or uuid.uuid4().hex}
    step = client.post(url, data, **extra)
    found = CONFIRMATION.search(step.text)
    return data | {"confirmation": found.group(1) if found else "", "confirm": "1"}
