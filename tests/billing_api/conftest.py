"""What the billing_api tests share: Cloudflare payload builders, a clock that stands still
until a test moves it, and the simulator run as ``python -m billing_api.simulator``.

Payloads are written in Cloudflare's wire units (money in cents, times in Unix seconds or
milliseconds), as the adapter receives them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok_Sup3rS3cret-value"
ACCOUNT = "0123456789abcdef0123456789abcdef"
BASE = "https://api.example.test/client/v4"
# A Wednesday, 10:20 UTC: fixed so that every run sees the same simulated data.
START = datetime(2026, 3, 11, 10, 20, tzinfo=UTC).timestamp()


def envelope(result: Any, **overrides: Any) -> dict[str, Any]:
    return {"success": True, "errors": [], "messages": [], "result": result, **overrides}


def error_body(code: float, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message}], "result": None}


def credit_balance_json(**overrides: Any) -> dict[str, Any]:
    return {
        "balance": 640.19,
        "has_default_payment_method": True,
        "payment_method": {"brand": "visa", "last4": "4242"},
        "topup_config": {
            "amount": 2000,
            "threshold": 500,
            "disabledReason": None,
            "error": None,
            "lastFailedAt": None,
        },
        "first_topup_success": True,
        **overrides,
    }


def invoice_json(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "in_1abc",
        "amount_due": 2500,
        "amount_paid": 2500,
        "amount_remaining": 0,
        "currency": "usd",
        "created": 1764000000,
        "description": "Credit top-up",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_1/in_1abc/pdf",
        "status": "paid",
        **overrides,
    }


def pagination(**overrides: Any) -> dict[str, Any]:
    return {"has_more": False, "page": 1, "per_page": 20, "total_count": 1, **overrides}


class Clock:
    """The simulator's clock: stands at ``START`` until the test moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def run_module(args: list[str], stderr: IO[str] | None = None) -> Iterator[queue.Queue[str]]:
    """Runs ``python -m billing_api.simulator``; yields its stdout lines; stops it with SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "billing_api.simulator", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        reader.join(timeout=5)
        stdout.close()
    assert process.returncode == 0


def read_banner(lines: queue.Queue[str]) -> dict[str, str]:
    """The ``name: value`` lines the module prints when it starts, up to the admin URL."""
    printed: dict[str, str] = {}
    deadline = time.monotonic() + 15
    while "admin" not in printed:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        key, sep, value = line.partition(":")
        if sep:
            printed[key.strip()] = value.strip()
    return printed
