"""One BillingClient per account per process, built from settings: in demo mode on the
in-process simulator's transport, else to ``BILLING_API_BASE_URL``. Tests swap the simulator
with ``use_simulator()``; changed ``BILLING_*`` settings drop the built clients.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from billing_api.client import BillingClient

if TYPE_CHECKING:
    from billing_api.simulator import Simulator

# One lock for both: a client is built against the simulator current at the time.
_lock = threading.RLock()
_simulator: Simulator | None = None
_clients: dict[str, BillingClient] = {}
# httpx clients we built for the simulator's transport: BillingClient closes only its own.
_http_clients: list[httpx.Client] = []


def client_for(account_id: str) -> BillingClient:
    """The client for a configured account; the caller checks the account is configured. In
    demo mode the process's simulator is built on first use."""
    global _simulator
    with _lock:
        if account_id not in _clients:
            http_client = None
            if settings.DEMO_MODE:
                if _simulator is None:
                    from billing_api.simulator import Simulator

                    _simulator = Simulator(
                        seed=settings.BILLING_SIMULATOR_SEED,
                        accounts=tuple(settings.BILLING_ACCOUNTS),
                    )
                http_client = httpx.Client(transport=_simulator.transport())
                _http_clients.append(http_client)
            _clients[account_id] = BillingClient(
                settings.BILLING_API_BASE_URL,
                settings.BILLING_ACCOUNT_TOKENS[account_id],
                account_id,
                timeout=settings.BILLING_API_TIMEOUT,
                http_client=http_client,
                max_retries=settings.BILLING_API_MAX_RETRIES,
            )
        return _clients[account_id]


def use_simulator(sim: Simulator | None) -> None:
    """Serve demo mode from ``sim`` (None: a fresh one on next use). For tests."""
    global _simulator
    with _lock:
        reset_clients()
        _simulator = sim


def reset_clients() -> None:
    with _lock:
        closing: list[BillingClient | httpx.Client] = [*_clients.values(), *_http_clients]
        _clients.clear()
        _http_clients.clear()
    for client in closing:
        client.close()


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(("BILLING_", "CLOUDFLARE_")) or setting == "DEMO_MODE":
        reset_clients()
