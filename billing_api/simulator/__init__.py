"""A stateful, seeded, faithful fake of Cloudflare's AI Gateway billing API.

``Simulator.transport()`` serves it in process to httpx; ``server.start_server`` and
``python -m billing_api.simulator`` serve it over HTTP.
"""

from __future__ import annotations

from .core import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, HOSTILE_HTML, HOSTILE_URL, Simulator
from .faults import ENDPOINTS, FaultError

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_TOKEN",
    "ENDPOINTS",
    "HOSTILE_HTML",
    "HOSTILE_URL",
    "FaultError",
    "Simulator",
]
