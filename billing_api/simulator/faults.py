"""Fault injection for the simulator: per endpoint key ("GET credit-balance", ...) or ``"*"``.

Switchable at run time; ``times`` limits how often a fault fires, so a test can script "429
once, then success". Per call, latency composes with any other fault, at most one answering
fault fires (the endpoint's own before the ``"*"`` one), and hostile rewrites a normal answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

#: Each kind of fault with the parameters it takes.
_PARAMS: Final[dict[str, frozenset[str]]] = {
    "latency": frozenset({"seconds"}),
    "error": frozenset({"status", "message"}),
    "rate_limit": frozenset({"retry_after"}),
    "hang": frozenset({"seconds"}),
    "malformed": frozenset(),
    "unsuccessful": frozenset({"code", "message"}),
    "hostile": frozenset(),
}
#: Faults that replace the answer; at most one of them fires per call.
ANSWERING_KINDS: Final = frozenset({"error", "rate_limit", "hang", "malformed", "unsuccessful"})
#: A hang in the HTTP server never holds a thread longer than this.
MAX_HANG_SECONDS: Final = 30.0


class FaultError(ValueError):
    """A fault specification that cannot be applied."""


@dataclass
class Fault:
    kind: str
    params: dict[str, Any]
    #: None fires for ever; otherwise the number of calls left.
    remaining: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "times": self.remaining, **self.params}


def _number(
    params: dict[str, Any], name: str, default: float, low: float, high: float, *, integer: bool
) -> Any:
    value = params.get(name, default)
    number = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        raise FaultError(f"{name}: must be {number}")
    if not low <= value <= high:
        raise FaultError(f"{name}: must be {number} from {low} to {high}")
    return value


def build_fault(endpoint: str, kind: str, times: int | None, params: dict[str, Any]) -> Fault:
    if endpoint != ALL_ENDPOINTS and endpoint not in ENDPOINTS:
        raise FaultError(f"endpoint: unknown endpoint {endpoint!r}; use one of {ENDPOINTS}")
    if kind not in _PARAMS:
        raise FaultError(f"kind: must be one of {', '.join(_PARAMS)}")
    unknown = set(params) - _PARAMS[kind]
    if unknown:
        raise FaultError(f"unknown parameter(s) for {kind}: {', '.join(sorted(unknown))}")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise FaultError("times: must be a positive integer or null")
    clean: dict[str, Any] = {}
    if kind in ("latency", "hang"):
        default = 0.5 if kind == "latency" else MAX_HANG_SECONDS
        seconds = _number(params, "seconds", default, 0, MAX_HANG_SECONDS, integer=False)
        clean["seconds"] = float(seconds)
    elif kind == "error":
        clean["status"] = _number(params, "status", 500, 500, 599, integer=True)
        if "message" in params:
            clean["message"] = str(params["message"])
    elif kind == "rate_limit":
        clean["retry_after"] = int(_number(params, "retry_after", 1, 0, 3600, integer=False))
    elif kind == "unsuccessful":
        clean["code"] = _number(params, "code", 1000, -math.inf, math.inf, integer=True)
        clean["message"] = str(params.get("message", "The billing service could not complete it."))
    return Fault(kind=kind, params=clean, remaining=times)


def fire(faults: dict[tuple[str, str], Fault], endpoint: str) -> dict[str, dict[str, Any]]:
    """The parameters of each kind of fault that fires for this call, consuming one use.
    ``faults`` is keyed by (endpoint key, kind); the caller holds the lock that guards it."""
    fired: dict[str, Fault] = {}
    # The endpoint's own faults come first, so they win over the "*" ones.
    keys = [key for key in faults if key[0] in (endpoint, ALL_ENDPOINTS)]
    for key in sorted(keys, key=lambda key: key[0] == ALL_ENDPOINTS):
        fault = faults[key]
        answered = fault.kind in ANSWERING_KINDS and not ANSWERING_KINDS.isdisjoint(fired)
        if fault.kind in fired or answered:
            continue
        fired[fault.kind] = fault
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining == 0:
                del faults[key]
    return {kind: fault.params for kind, fault in fired.items()}
