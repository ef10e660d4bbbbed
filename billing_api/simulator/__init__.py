"""A stateful, seeded, faithful fake of Cloudflare's AI Gateway billing API.

``Simulator`` is the core; ``Simulator.transport()`` serves it in process to httpx and
``server.start_server`` / ``python -m billing_api.simulator`` serve it over HTTP. It imports
nothing from Django.
"""

from __future__ import annotations

from .core import (
    API_PREFIX,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_TOKEN,
    HOSTILE_HTML,
    HOSTILE_URL,
    Mode,
    Reply,
    Simulator,
    SimulatorTransport,
)
from .faults import ALL_ENDPOINTS, ENDPOINTS, FAULT_KINDS, FaultError
from .state import Account

__all__ = [
    "ALL_ENDPOINTS",
    "API_PREFIX",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_TOKEN",
    "ENDPOINTS",
    "FAULT_KINDS",
    "HOSTILE_HTML",
    "HOSTILE_URL",
    "Account",
    "FaultError",
    "Mode",
    "Reply",
    "Simulator",
    "SimulatorTransport",
]
