"""A stateful, seeded, faithful fake of Cloudflare's AI Gateway billing API.

``Simulator`` is the core; ``Simulator.transport()`` serves it in process to httpx and
``server.start_server`` / ``python -m billing_api.simulator`` serve it over HTTP. It imports
nothing from Django.
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
