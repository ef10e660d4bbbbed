"""Fault injection for the simulator: per endpoint, switchable at run time, optionally limited.

A fault is attached to an endpoint key ("GET credit-balance", ...) or to ``"*"`` (every
endpoint). Each has a kind and parameters; ``times`` limits how often it fires so a test can
script "429 once, then success". Only the first matching fault of each *stage* fires per call:
latency composes with any other fault, the answering faults (error, rate_limit, hang,
malformed, unsuccessful) are mutually exclusive, and hostile rewrites a normal answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Final

ENDPOINTS: Final[tuple[str, ...]] = (
    "GET credit-balance",
    "GET usage-history",
    "GET invoice-history",
    "GET invoice-preview",
    "POST topup",
    "POST topup/status",
    "GET topup/config",
    "POST topup/config",
    "DELETE topup/config",
    "GET spending-limit",
    "POST spending-limit",
    "DELETE spending-limit",
    "GET topup/limits",
)
ALL_ENDPOINTS: Final = "*"

FAULT_KINDS: Final[tuple[str, ...]] = (
    "latency",
    "error",
    "rate_limit",
    "hang",
    "malformed",
    "unsuccessful",
    "hostile",
)
#: Faults that replace the answer; at most one of them fires per call.
ANSWERING_KINDS: Final = frozenset({"error", "rate_limit", "hang", "malformed", "unsuccessful"})

#: A hang in the HTTP server never holds a thread longer than this.
MAX_HANG_SECONDS: Final = 30.0

_ALLOWED_PARAMS: Final[dict[str, frozenset[str]]] = {
    "latency": frozenset({"seconds"}),
    "error": frozenset({"status", "message"}),
    "rate_limit": frozenset({"retry_after"}),
    "hang": frozenset({"seconds"}),
    "malformed": frozenset(),
    "unsuccessful": frozenset({"code", "message"}),
    "hostile": frozenset(),
}


class FaultError(ValueError):
    """A fault specification that cannot be applied."""


@dataclass
class Fault:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    #: None fires for ever; otherwise the number of calls left.
    remaining: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.remaining, **self.params}


def _number(params: dict[str, Any], name: str, default: float, *, low: float, high: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{name}: must be a number")
    if not low <= value <= high:
        raise FaultError(f"{name}: must be between {low} and {high}")
    return float(value)


def build_fault(kind: str, times: int | None, params: dict[str, Any]) -> Fault:
    if kind not in FAULT_KINDS:
        raise FaultError(f"kind: must be one of {', '.join(FAULT_KINDS)}")
    unknown = set(params) - _ALLOWED_PARAMS[kind]
    if unknown:
        raise FaultError(f"unknown parameter(s) for {kind}: {', '.join(sorted(unknown))}")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise FaultError("times: must be a positive integer or null")
    clean: dict[str, Any] = {}
    if kind == "latency":
        clean["seconds"] = _number(params, "seconds", 0.5, low=0, high=MAX_HANG_SECONDS)
    elif kind == "hang":
        clean["seconds"] = _number(
            params, "seconds", MAX_HANG_SECONDS, low=0, high=MAX_HANG_SECONDS
        )
    elif kind == "error":
        status = params.get("status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
            raise FaultError("status: must be an integer from 500 to 599")
        clean["status"] = status
        if "message" in params:
            clean["message"] = str(params["message"])
    elif kind == "rate_limit":
        clean["retry_after"] = int(_number(params, "retry_after", 1, low=0, high=3600))
    elif kind == "unsuccessful":
        code = params.get("code", 1000)
        if isinstance(code, bool) or not isinstance(code, int):
            raise FaultError("code: must be an integer")
        clean["code"] = code
        clean["message"] = str(params.get("message", "The billing service could not complete it."))
    return Fault(kind=kind, params=clean, remaining=times)


class FaultTable:
    """Faults per endpoint key. Thread-safe on its own (the simulator also locks around it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, list[Fault]] = {}

    def set(self, endpoint: str, fault: Fault) -> None:
        if endpoint != ALL_ENDPOINTS and endpoint not in ENDPOINTS:
            raise FaultError(f"endpoint: unknown endpoint {endpoint!r}; use one of {ENDPOINTS}")
        with self._lock:
            # One fault per kind per endpoint: setting it again replaces it.
            kept = [f for f in self._faults.get(endpoint, []) if f.kind != fault.kind]
            self._faults[endpoint] = [*kept, fault]

    def clear(self, endpoint: str | None = None) -> None:
        with self._lock:
            if endpoint is None:
                self._faults.clear()
            else:
                self._faults.pop(endpoint, None)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {key: [f.as_dict() for f in faults] for key, faults in self._faults.items()}

    def take(self, endpoint: str) -> list[Fault]:
        """The faults that fire for this call, consuming one use of each."""
        fired: list[Fault] = []
        with self._lock:
            candidates = [*self._faults.get(endpoint, []), *self._faults.get(ALL_ENDPOINTS, [])]
            answered = False
            seen_kinds: set[str] = set()
            for fault in candidates:
                if fault.kind in seen_kinds:
                    continue  # the endpoint's own fault wins over the "*" one
                if fault.kind in ANSWERING_KINDS:
                    if answered:
                        continue
                    answered = True
                seen_kinds.add(fault.kind)
                fired.append(fault)
                if fault.remaining is not None:
                    fault.remaining -= 1
            for key in (endpoint, ALL_ENDPOINTS):
                if key in self._faults:
                    left = [f for f in self._faults[key] if f.remaining is None or f.remaining > 0]
                    if left:
                        self._faults[key] = left
                    else:
                        del self._faults[key]
        return fired
