"""The simulator's core: (method, path, query, headers, body) in, (status, headers, body) out.

Where Cloudflare documents nothing, the simulator chooses:

* ``usage-history``: no ``end_time`` is now; no ``start_time`` is 30 days (day) or 24 hours
  (hour) before the end; hourly spans at most 31 days. UTC buckets of hours already over,
  oldest first, from the start of the 90-day history.
* ``invoice-history`` also honours ``page`` and ``per_page`` (1..100, default 20).
* ``POST topup`` answers 400 with no card (and no ``payment_method_id``) or above
  ``topup/limits``; it adds its amount (no 5% fee); its invoice id is its
  ``payment_intent_id``. Auto top-up is checked as each hour is spent and settles at once; a
  failed one stays off until a rule is saved again. The balance may go negative (Cloudflare
  says it can). The spending limit is stored, not enforced.
* ``Ratelimit`` headers count requests but never refuse: 429s only come from the
  ``rate_limit`` fault.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import httpx

from .faults import ENDPOINTS, Fault, build_fault, fire
from .state import (
    CURRENCY_LIMITS,
    DAY,
    HOUR,
    MIN_TOPUP_CENTS,
    Account,
    SpendingLimit,
    TopupConfig,
    hour_floor,
    seed_account,
    stable_token,
)

DEFAULT_TOKEN: Final = "sim-cf-api-token-do-not-use-in-production"
DEFAULT_ACCOUNT_ID: Final = "023e105f4ecef8ad9ca31a8372d0c353"
API_PREFIX: Final = "/client/v4"
BILLING_PATH: Final = "ai-gateway/billing"

Mode = Literal["default", "current"]
Reply = tuple[int, dict[str, str], bytes]

# Cloudflare-wide codes (real).
CODE_AUTH: Final = 10000
CODE_NO_ROUTE: Final = 7000
CODE_BAD_ACCOUNT: Final = 7003
CODE_BAD_JSON: Final = 6007
CODE_RATE_LIMITED: Final = 971
# Billing codes: Cloudflare documents none; these are the simulator's choices (1000, a rule
# refused it, is the one billing code seen upstream; 1001 comes once per bad field).
CODE_BILLING_RULE: Final = 1000
CODE_VALIDATION: Final = 1001
CODE_TOPUP_NOT_FOUND: Final = 1004
CODE_SERVER_ERROR: Final = 1500

SPENDING_LIMIT_DEPRECATED: Final = (
    "Deprecated: spending limits can no longer be created, enabled, or modified and this "
    "endpoint always responds 403. Use the new AI Gateway spend limits instead: "
    "https://developers.cloudflare.com/ai-gateway/features/spend-limits/. Existing limits can "
    "be removed via DELETE /spending-limit."
)
DASHBOARD_SESSIONS_ONLY: Final = (
    "Dashboard sessions only: API token, OAuth, and service credentials are rejected with 403."
)
HOSTILE_HTML: Final = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")
HOSTILE_URL: Final = "javascript:alert(1)"

RATE_LIMIT_QUOTA: Final = 1200
RATE_LIMIT_WINDOW: Final = 300
MAX_HOURLY_SPAN_MS: Final = 31 * DAY * 1000
DEFAULT_PER_PAGE: Final = 20
MAX_PER_PAGE: Final = 100
#: The in-process front answers a hang with ReadTimeout after at most this long.
TRANSPORT_HANG_SECONDS: Final = 0.05

_SERVER_ERROR_MESSAGES: Final = {
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
}
# A body cut short mid-value, as a dropped connection behind a proxy leaves it.
_MALFORMED_BODY: Final = b'{"success": true, "errors": [], "messages": [], "result": {"balance": 12'


@dataclass(eq=False)
class _Refusal(Exception):
    """Ends a request with a Cloudflare error envelope."""

    status: int
    errors: list[tuple[int, str]]
    headers: dict[str, str] = field(default_factory=dict)


def _invalid(messages: list[str]) -> _Refusal:
    return _Refusal(400, [(CODE_VALIDATION, m) for m in messages])


#: A field's rule: an integer of at least this many cents, one of these strings, or (None)
#: any non-empty string.
_Spec = int | tuple[str, ...] | None

_TOPUP_BODY: Final[dict[str, _Spec]] = {"amount": MIN_TOPUP_CENTS, "payment_method_id": None}
_STATUS_BODY: Final[dict[str, _Spec]] = {"payment_intent_id": None}
_CONFIG_BODY: Final[dict[str, _Spec]] = {"amount": 1000, "threshold": 500}
_LIMIT_BODY: Final[dict[str, _Spec]] = {
    "amount": 100,
    "duration": ("daily", "weekly", "monthly"),
    "strategy": ("fixed", "sliding"),
}


def _check(value: object, name: str, spec: _Spec) -> str | None:
    if isinstance(spec, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name}: must be an integer (cents), got {json.dumps(value)}"
        return f"{name}: must be at least {spec} (cents)" if value < spec else None
    if isinstance(spec, tuple):
        ok = isinstance(value, str) and value in spec
        return None if ok else f"{name}: must be one of {', '.join(spec)}"
    return None if isinstance(value, str) and value else f"{name}: must be a non-empty string"


def _validate_body(
    body: bytes, fields: Mapping[str, _Spec], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _Refusal(400, [(CODE_BAD_JSON, "Malformed JSON in request body")]) from None
    if not isinstance(data, dict):
        raise _invalid(["body: must be a JSON object"])
    problems = [
        f"{name}: unknown field (additionalProperties is false; allowed: {', '.join(fields)})"
        for name in sorted(set(data) - set(fields))
    ]
    for name, spec in fields.items():
        if name not in data:
            if name not in optional:
                problems.append(f"{name}: required")
        elif (problem := _check(data[name], name, spec)) is not None:
            problems.append(problem)
    if problems:
        raise _invalid(problems)
    return data


def _query_number(query: Mapping[str, str], name: str, default: float) -> float:
    raw = query.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise _invalid([f"{name}: must be a Unix timestamp in milliseconds"])
    return value


def _query_int(query: Mapping[str, str], name: str, default: int, high: int | None) -> int:
    raw = query.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid([f"{name}: must be an integer"]) from None
    if value < 1:
        raise _invalid([f"{name}: must be at least 1"])
    if high is not None and value > high:
        raise _invalid([f"{name}: must be at most {high}"])
    return value


def _refuse_by_fault(faults: Mapping[str, dict[str, Any]]) -> None:
    """Raises the answer of the answering fault that fired, if one did (a hang has waited)."""
    if (params := faults.get("error")) is not None:
        status = params["status"]
        message = params.get("message") or _SERVER_ERROR_MESSAGES.get(status, "Server error")
        raise _Refusal(status, [(CODE_SERVER_ERROR, message)])
    if (params := faults.get("rate_limit")) is not None:
        message = "Please wait and consider throttling your request speed"
        retry_after = {"Retry-After": str(params["retry_after"])}
        raise _Refusal(429, [(CODE_RATE_LIMITED, message)], retry_after)
    if (params := faults.get("unsuccessful")) is not None:
        # HTTP 200 whose envelope says it failed.
        raise _Refusal(200, [(params["code"], params["message"])])


def _hostile(value: Any, seen: Counter[str] | None = None) -> Any:
    """Rewrites the free-text fields a page shows with HTML/JS, and PDF links with javascript:."""
    seen = seen if seen is not None else Counter()
    if isinstance(value, list):
        return [_hostile(item, seen) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in {"description", "brand", "error", "created_by", "disabledReason"}:
            # Alternate per field so a list shows both payloads in the same column.
            out[key] = HOSTILE_HTML[seen[key] % len(HOSTILE_HTML)]
            seen[key] += 1
        elif key == "invoice_pdf":
            out[key] = HOSTILE_URL
        else:
            out[key] = _hostile(item, seen)
    return out


class Simulator:
    """A stateful, seeded fake of Cloudflare's AI Gateway billing API (12 endpoints + limits)."""

    def __init__(
        self,
        seed: int = 0,
        mode: Mode = "default",
        token: str = DEFAULT_TOKEN,
        read_token: str | None = None,
        accounts: Iterable[str] = (DEFAULT_ACCOUNT_ID,),
        clock: Callable[[], float] = time.time,
        topup_settle_seconds: float = 5.0,
    ) -> None:
        if mode not in ("default", "current"):
            raise ValueError(f"mode must be 'default' or 'current', not {mode!r}")
        if not token:
            raise ValueError("token must not be empty")
        self.mode: Mode = mode
        self.token = token
        self.read_token = read_token
        self.topup_settle_seconds = topup_settle_seconds
        self._clock = clock
        self._clock_offset = 0.0
        self._lock = threading.RLock()
        self._faults: dict[tuple[str, str], Fault] = {}
        self._calls: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._in_flight_changed = threading.Condition(self._lock)
        # What latency and hang faults wait on; release() sets it and puts a new one in place.
        self._released = threading.Event()
        self._rate_window = -1
        self._rate_count = 0
        now = self.now()
        ids = tuple(dict.fromkeys(accounts))
        if not ids:
            raise ValueError("at least one account id is needed")
        self._accounts: dict[str, Account] = {
            account_id: seed_account(seed, account_id, index, now)
            for index, account_id in enumerate(ids)
        }

    @property
    def account_ids(self) -> tuple[str, ...]:
        return tuple(self._accounts)

    def now(self) -> float:
        return self._clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        with self._lock:
            self._clock_offset += seconds

    @property
    def calls(self) -> Counter[str]:
        """Calls served per endpoint key (a copy), faulted ones included."""
        with self._lock:
            return Counter(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    @property
    def in_flight(self) -> Counter[str]:
        """Requests routed and not yet answered (held ones too), per endpoint key; a copy."""
        with self._lock:
            return +self._in_flight

    def wait_for_in_flight(self, expected: Mapping[str, int], timeout: float = 5.0) -> bool:
        """Blocks until at least ``expected`` requests per endpoint key are in flight at once;
        False if that did not happen within ``timeout`` seconds (a safety bound)."""
        with self._in_flight_changed:
            return self._in_flight_changed.wait_for(
                lambda: all(self._in_flight[key] >= n for key, n in expected.items()), timeout
            )

    def account(self, account_id: str) -> Account:
        """The account's live state, brought up to the current time. KeyError if not served."""
        with self._lock:
            account = self._accounts[account_id]
            account.advance(self.now())
            return account

    def fail_auto_topup(
        self,
        account_id: str,
        error: str = "Your card was declined.",
        disabled_reason: str = "payment_failed",
    ) -> None:
        with self._lock:
            self.account(account_id).auto_topup_failure = (error, disabled_reason)

    def boost_usage(
        self, account_id: str, factor: float, hours: int, start: float | None = None
    ) -> None:
        """Multiplies the account's spend by ``factor`` for ``hours`` hours from ``start``
        (default: the current hour): a batch job, a runaway agent, a spike to alert on."""
        if factor < 0 or hours < 1:
            raise ValueError("factor must be 0 or more and hours at least 1")
        with self._lock:
            account = self.account(account_id)
            first = hour_floor(self.now() if start is None else start)
            account.boosts.append((first, first + hours, factor))

    def set_fault(
        self, endpoint: str, kind: str, *, times: int | None = None, **params: Any
    ) -> None:
        """Injects a fault on an endpoint key (or ``"*"``), replacing one of its kind there."""
        fault = build_fault(endpoint, kind, times, params)
        with self._lock:
            # Popped first: a fault set again fires after the others, as a new one does.
            self._faults.pop((endpoint, kind), None)
            self._faults[endpoint, kind] = fault

    def clear_faults(self, endpoint: str | None = None) -> None:
        """Removes faults (of one endpoint key, or all) and releases every held request."""
        with self._lock:
            for key in [key for key in self._faults if endpoint in (None, key[0])]:
                del self._faults[key]
        self.release()

    def faults(self) -> dict[str, list[dict[str, Any]]]:
        snapshot: dict[str, list[dict[str, Any]]] = {}
        with self._lock:
            for (endpoint, _), fault in self._faults.items():
                snapshot.setdefault(endpoint, []).append(fault.as_dict())
        return snapshot

    def release(self) -> None:
        """Wakes every request held by a latency or hang fault; they then answer normally.
        One that arrives afterwards waits out its faults again (set ``times``, or clear them)."""
        with self._lock:
            released, self._released = self._released, threading.Event()
        released.set()

    def transport(self) -> httpx.MockTransport:
        """An in-process front for ``httpx.Client`` and ``httpx.AsyncClient``."""
        return SimulatorTransport(self._serve_httpx)

    def _serve_httpx(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        read = timeouts.get("read") if isinstance(timeouts, dict) else None
        limit = TRANSPORT_HANG_SECONDS if read is None else min(TRANSPORT_HANG_SECONDS, read)
        try:
            status, headers, body = self.handle(
                request.method,
                request.url.path,
                dict(request.url.params.multi_items()),
                dict(request.headers.items()),
                request.content,
                hang_limit=limit,
            )
        except TimeoutError:
            raise httpx.ReadTimeout("simulated hang: no answer", request=request) from None
        return httpx.Response(status, headers=headers, content=body, request=request)

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        hang_limit: float | None = None,
    ) -> Reply:
        """Serves one request. Latency and hang faults block the calling thread (bounded); a
        hang cut short to ``hang_limit`` and not released by then raises TimeoutError."""
        method = method.upper()
        routed = self._route(method, path)
        if routed is None:
            return self._error(_Refusal(404, [(CODE_NO_ROUTE, "No route for that URI")]))
        account_id, endpoint = routed
        with self._lock:
            faults = fire(self._faults, endpoint)
            self._calls[endpoint] += 1
            # Counted in flight with the current event, so a release() issued after a test
            # has seen this request in flight always reaches it.
            self._in_flight[endpoint] += 1
            self._in_flight_changed.notify_all()
            released = self._released
        try:
            if "latency" in faults:
                released.wait(faults["latency"]["seconds"])
            if "hang" in faults:
                hang = faults["hang"]["seconds"]
                limit = hang if hang_limit is None else min(hang, hang_limit)
                if not released.wait(limit) and hang_limit is not None:
                    raise TimeoutError
            if "malformed" in faults:
                return 200, self._headers(), _MALFORMED_BODY
            _refuse_by_fault(faults)
            status, result = self._answer(endpoint, account_id, query, headers, body)
            if "hostile" in faults:
                result = _hostile(result)
            payload = {"success": True, "errors": [], "messages": [], "result": result}
            return self._reply(status, payload)
        except _Refusal as refusal:
            return self._error(refusal)
        finally:
            with self._lock:
                self._in_flight[endpoint] -= 1
                self._in_flight_changed.notify_all()

    def _route(self, method: str, path: str) -> tuple[str, str] | None:
        """(account id, endpoint key) of a billing API path; None for any other path."""
        prefix = f"{API_PREFIX}/accounts/"
        parts = path.removeprefix(prefix).split("/") if path.startswith(prefix) else []
        if len(parts) < 4 or not parts[0] or "/".join(parts[1:3]) != BILLING_PATH:
            return None
        endpoint = f"{method} {'/'.join(parts[3:])}"
        return (parts[0], endpoint) if endpoint in ENDPOINTS else None

    def _answer(
        self,
        endpoint: str,
        account_id: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        writer = self._authenticate(headers)
        if account_id not in self._accounts:
            where = f"/accounts/{account_id}/{BILLING_PATH}"
            message = f"Could not route to {where}, perhaps your object identifier is invalid?"
            raise _Refusal(404, [(CODE_BAD_ACCOUNT, message)])
        if not writer and not endpoint.startswith("GET "):
            raise _Refusal(403, [(CODE_AUTH, "Authentication error")])
        with self._lock:
            account = self._accounts[account_id]
            now = self.now()
            account.advance(now)
            match endpoint:
                case "GET credit-balance":
                    return 200, account.credit_balance()
                case "GET usage-history":
                    return 200, self._usage_history(account, now, query)
                case "GET invoice-history":
                    return 200, self._invoice_history(account, query)
                case "GET invoice-preview":
                    return 200, account.invoice_preview(now)
                case "POST topup":
                    return 200, self._create_topup(account, now, body)
                case "POST topup/status":
                    data = _validate_body(body, _STATUS_BODY)
                    status = account.topup_status(data["payment_intent_id"])
                    if status is None:
                        message = "payment_intent_id: no top-up with this id"
                        raise _Refusal(404, [(CODE_TOPUP_NOT_FOUND, message)])
                    return 200, {"payment_intent_id": data["payment_intent_id"], "status": status}
                case "GET topup/config":
                    return 200, account.topup_config.as_json()
                case "POST topup/config":
                    self._refuse_in_current_mode(DASHBOARD_SESSIONS_ONLY)
                    data = _validate_body(body, _CONFIG_BODY)
                    # A new rule has no failure: saving it again is how auto top-up recovers.
                    account.topup_config = TopupConfig(**data)
                    return 200, data
                case "DELETE topup/config":
                    self._refuse_in_current_mode(DASHBOARD_SESSIONS_ONLY)
                    account.topup_config = TopupConfig()
                    return 200, {}
                case "GET spending-limit":
                    return 200, account.spending_limit.as_json()
                case "POST spending-limit":
                    self._refuse_in_current_mode(SPENDING_LIMIT_DEPRECATED)
                    data = _validate_body(body, _LIMIT_BODY)
                    account.spending_limit = SpendingLimit(**data)
                    return 201, data
                case "DELETE spending-limit":
                    account.spending_limit = SpendingLimit()
                    return 200, {}
                case "GET topup/limits":
                    return 200, {
                        "min_cents": MIN_TOPUP_CENTS,
                        "max_cents": account.max_topup_cents,
                        "currency": CURRENCY_LIMITS,
                    }
            raise AssertionError(f"unrouted endpoint {endpoint}")  # _route only passes ENDPOINTS

    def _authenticate(self, headers: Mapping[str, str]) -> bool:
        """True for the write token, False for the read-only one; 401 otherwise."""
        header = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if scheme.lower() == "bearer" and presented:
            for token, writer in ((self.token, True), (self.read_token, False)):
                if token and hmac.compare_digest(presented.encode(), token.encode()):
                    return writer
        raise _Refusal(401, [(CODE_AUTH, "Authentication error")])

    def _refuse_in_current_mode(self, message: str) -> None:
        if self.mode == "current":
            raise _Refusal(403, [(CODE_BILLING_RULE, message)])

    def _usage_history(
        self, account: Account, now: float, query: Mapping[str, str]
    ) -> dict[str, Any]:
        window = {"day": DAY, "hour": HOUR}.get(query.get("value_grouping_window", ""))
        if window is None:
            raise _invalid(["value_grouping_window: required, one of day, hour"])
        end_ms = _query_number(query, "end_time", now * 1000)
        span = 30 * DAY if window == DAY else DAY
        start_ms = _query_number(query, "start_time", end_ms - span * 1000)
        if start_ms >= end_ms:
            raise _invalid(["start_time: must be before end_time"])
        if window == HOUR and end_ms - start_ms > MAX_HOURLY_SPAN_MS:
            raise _invalid(
                ["start_time: an hourly window may span at most 31 days; use day for longer"]
            )
        first = max(math.floor(start_ms / 1000 / window), account.origin_hour * HOUR // window)
        # Up to the end asked for, and never into an hour that is not over yet.
        stop = min(math.ceil(end_ms / 1000), account.settled_hour * HOUR)
        history = [
            {
                "id": "mtrusgsum_"
                + stable_token(24, account.seed, account.account_id, window, bucket),
                "aggregated_value": account.usage_between(
                    bucket // HOUR, (bucket + window) // HOUR
                ),
                "start_time": bucket * 1000,
                "end_time": (bucket + window) * 1000,
            }
            for bucket in range(first * window, stop, window)
        ]
        return {"history": history}

    def _invoice_history(self, account: Account, query: Mapping[str, str]) -> dict[str, Any]:
        kind = query.get("type") or "all"
        if kind not in ("auto", "all", "manual"):
            raise _invalid(["type: must be one of auto, all, manual"])
        page = _query_int(query, "page", 1, None)
        per_page = _query_int(query, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)
        invoices = sorted(account.invoices, key=lambda i: (i.created, i.id), reverse=True)
        if kind != "all":
            invoices = [i for i in invoices if i.origin == kind]
        chosen = invoices[(page - 1) * per_page : page * per_page]
        return {
            "invoices": [i.as_json() for i in chosen],
            "pagination": {
                "has_more": page * per_page < len(invoices),
                "page": page,
                "per_page": per_page,
                "total_count": len(invoices),
            },
        }

    def _create_topup(self, account: Account, now: float, body: bytes) -> dict[str, Any]:
        data = _validate_body(body, _TOPUP_BODY, optional=frozenset({"payment_method_id"}))
        amount: int = data["amount"]
        if amount > account.max_topup_cents:
            raise _invalid(
                [f"amount: must be at most {account.max_topup_cents} (cents) for this account"]
            )
        method = account.payment_method
        method_id: str | None = data.get("payment_method_id")
        if method_id is not None and not method_id.startswith("pm_"):
            raise _invalid(["payment_method_id: no such PaymentMethod"])
        if method_id is None and method is None:
            message = (
                "No default payment method on file: add a card in the Cloudflare dashboard "
                "(Billing) before buying credits."
            )
            raise _Refusal(400, [(CODE_BILLING_RULE, message)])
        onboarding = not account.first_topup_success
        topup = account.create_topup(amount, now, self.topup_settle_seconds, "api-token")
        result: dict[str, Any] = {
            "client_secret": account.client_secret(topup),
            "onboarding": onboarding,
            "payment_intent_id": topup.payment_intent_id,
        }
        # The card is named when it is the one charged: the default, or the one asked for.
        if method is not None and method_id in (None, method.id):
            result["brand"], result["last4"] = method.brand, method.last4
        account.advance(now)  # a zero settle time completes at once
        return result

    def _error(self, refusal: _Refusal) -> Reply:
        # Cloudflare's error envelope has no "messages" key.
        errors = [{"code": code, "message": message} for code, message in refusal.errors]
        payload = {"success": False, "errors": errors, "result": None}
        return self._reply(refusal.status, payload, refusal.headers)

    def _reply(
        self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
    ) -> Reply:
        headers = self._headers() | (extra or {})
        return status, headers, json.dumps(payload, separators=(",", ":")).encode()

    def _headers(self) -> dict[str, str]:
        now = self.now()
        with self._lock:
            window = math.floor(now / RATE_LIMIT_WINDOW)
            if window != self._rate_window:
                self._rate_window, self._rate_count = window, 0
            self._rate_count += 1
            remaining = max(0, RATE_LIMIT_QUOTA - self._rate_count)
        reset = max(1, math.ceil((window + 1) * RATE_LIMIT_WINDOW - now))
        return {
            "Content-Type": "application/json",
            "cf-ray": f"{secrets.token_hex(8)}-SIM",
            "Ratelimit": f'"default";r={remaining};t={reset}',
            "Ratelimit-Policy": f'"default";q={RATE_LIMIT_QUOTA};w={RATE_LIMIT_WINDOW}',
        }


class SimulatorTransport(httpx.MockTransport):
    """Serves an async client's calls in a worker thread: latency and hangs never block its loop."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return await asyncio.to_thread(self.handle_request, request)
