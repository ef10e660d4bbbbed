"""BillingClient: one method per endpoint of Cloudflare's AI Gateway billing API.

Knows HTTP and Cloudflare, nothing of Django. Every failure leaves as a ``BillingError``
(see ``errors``); httpx and pydantic exceptions never escape. Arguments are checked before
anything is sent: a bad one raises ``ValidationError`` with no status code.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from typing import Any, Self
from urllib.parse import quote

import httpx
import prometheus_client
import pydantic

from . import errors, models

logger = logging.getLogger(__name__)

# A billing page waits on these calls, so fail fast on a dead host (connect) but give a
# slow-but-alive API time to answer (read).
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 3.0
DEFAULT_MAX_RETRIES = 2
# Cloudflare blocks for five minutes past its rate limit; waiting that long inside a page
# request helps nobody, so a longer Retry-After is reported to the caller instead.
RETRY_AFTER_CAP = 10.0
BACKOFF_BASE = 0.5
BACKOFF_MAX = 4.0
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: The id of the work (a page view) that makes the calls: sent as ``X-Request-ID`` so that
#: Cloudflare's side can be matched with ours, and put on our log lines by the caller's
#: logging filter. Set by whoever runs the client (the dashboard's request-id middleware).
request_id: ContextVar[str | None] = ContextVar("billing_api_request_id", default=None)

# What the API budget is spent on, per endpoint.
UPSTREAM_REQUESTS = prometheus_client.Counter(
    "billing_api_upstream_requests",
    "HTTP requests sent to the billing API, retries included, by outcome.",
    ["endpoint", "method", "outcome"],
)
UPSTREAM_LATENCY = prometheus_client.Histogram(
    "billing_api_upstream_request_duration_seconds",
    "Time for one HTTP request to the billing API to answer or fail.",
    ["endpoint", "method"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
UPSTREAM_RETRIES = prometheus_client.Counter(
    "billing_api_upstream_retries", "Retries of billing API reads.", ["endpoint", "method"]
)
UPSTREAM_ERRORS = prometheus_client.Counter(
    "billing_api_upstream_errors",
    "Billing API calls that ended in an error (after retries), by error class.",
    ["endpoint", "method", "error"],
)

_STATUS_ERRORS: dict[int, type[errors.BillingStatusError]] = {
    400: errors.ValidationError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    422: errors.ValidationError,
    429: errors.RateLimitedError,
}


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _invalid(message: str) -> errors.ValidationError:
    return errors.ValidationError(message, status_code=None)


def _cents(amount: Decimal, minimum_cents: int, what: str) -> int:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise _invalid(f"{what} must be a Decimal number of dollars")
    cents = amount / models.REQUEST_MONEY_UNIT
    if cents != cents.to_integral_value():
        raise _invalid(f"{what} must be whole cents, not ${amount}")
    if cents < minimum_cents:
        minimum = models.cents_to_dollars(minimum_cents)
        raise _invalid(
            f"{what} must be at least ${minimum:,.2f} (Cloudflare's minimum), not ${amount:,.2f}"
        )
    return int(cents)


class BillingClient:
    """A client for one Cloudflare account's AI Gateway billing.

    Owns an ``httpx.Client`` unless one is given (tests give one whose transport is
    the simulator). GET calls are retried at most ``max_retries`` times on connection
    errors, 408, 429 and 5xx; POST and DELETE never are: a top-up must not be paid twice.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        account_id: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise errors.AuthenticationError("no API token configured", status_code=None)
        if not account_id:
            raise errors.NotFoundError("no account id configured", status_code=None)
        self._base_url = base_url.rstrip("/")
        self._token = token
        self.account_id = account_id
        self.max_retries = max_retries
        self._sleep = sleep
        self._timeout = httpx.Timeout(timeout, connect=min(connect_timeout, timeout))
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self._timeout)
        self._prefix = f"{self._base_url}/accounts/{quote(account_id, safe='')}/ai-gateway/billing/"

    def __repr__(self) -> str:
        # Never the token.
        return f"BillingClient(base_url={self._base_url!r}, account_id={self.account_id!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ reads

    def credit_balance(self) -> models.CreditBalance:
        """The balance, the card on file and the auto top-up rule."""
        return self._call(models.CreditBalance, "GET", "credit-balance")

    def usage_history(
        self,
        window: models.UsageWindow,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> models.UsageHistory:
        """Spend per day or per hour between ``start`` and ``end`` (aware datetimes)."""
        if window not in ("day", "hour"):
            raise _invalid(f"usage window must be 'day' or 'hour', not {window!r}")
        params: dict[str, str] = {"value_grouping_window": window}
        for name, moment in (("start_time", start), ("end_time", end)):
            if moment is not None and moment.tzinfo is None:
                raise _invalid("naive datetime: pass an aware one (UTC)")
            if moment is not None:  # Unix milliseconds, the documented unit
                params[name] = str(int(moment.timestamp() * 1000))
        if start is not None and end is not None and start >= end:
            raise _invalid("usage range must start before it ends")
        return self._call(models.UsageHistory, "GET", "usage-history", params=params)

    def invoice_history(
        self, type: models.InvoiceType = "all", page: int = 1
    ) -> models.InvoiceHistory:
        """Past invoices, newest first, filtered by ``type``. Cloudflare documents no page
        parameter although it answers with ``pagination``: ``page`` is sent only past page 1."""
        if type not in ("auto", "all", "manual"):
            raise _invalid(f"invoice type must be auto, manual or all, not {type!r}")
        if page < 1:
            raise _invalid("page must be 1 or more")
        params: dict[str, str] = {"type": type}
        if page > 1:
            params["page"] = str(page)
        return self._call(models.InvoiceHistory, "GET", "invoice-history", params=params)

    def invoice_preview(self) -> models.InvoicePreview:
        """The upcoming invoice with its line items."""
        return self._call(models.InvoicePreview, "GET", "invoice-preview")

    def topup_config(self) -> models.TopupConfig:
        """The auto top-up rule (amount and threshold are None when none is set)."""
        return self._call(models.TopupConfig, "GET", "topup/config")

    def topup_limits(self) -> models.TopupLimits:
        """The smallest and largest top-up this account may make (in Cloudflare's spec, not
        its SDKs: callers fall back to the documented minimum when it fails)."""
        return self._call(models.TopupLimits, "GET", "topup/limits")

    def spending_limit(self) -> models.SpendingLimit:
        """The account-wide spending limit (deprecated upstream, still readable)."""
        return self._call(models.SpendingLimit, "GET", "spending-limit")

    # ------------------------------------------------------------ writes (never retried)

    def create_topup(
        self, amount: Decimal, *, payment_method_id: str | None = None
    ) -> models.Topup:
        """Charge ``amount`` dollars to the card on file and add it as credit. Sent once: after a
        timeout the outcome is unknown, to reconcile with :meth:`topup_status`, never resend."""
        cents = _cents(amount, models.MIN_TOPUP_CENTS, "top-up amount")
        body: dict[str, object] = {"amount": cents}
        if payment_method_id is not None:
            body["payment_method_id"] = payment_method_id
        return self._call(models.Topup, "POST", "topup", body=body)

    def topup_status(self, payment_intent_id: str) -> models.TopupStatus:
        """Whether a top-up has completed. A POST upstream, so never retried here either."""
        if not payment_intent_id:
            raise _invalid("payment_intent_id is required")
        body = {"payment_intent_id": payment_intent_id}
        return self._call(models.TopupStatus, "POST", "topup/status", body=body)

    def set_topup_config(self, amount: Decimal, threshold: Decimal) -> models.TopupConfigSet:
        """Set the auto top-up rule: when the balance falls below ``threshold``, add ``amount``.
        Cloudflare accepts it from dashboard sessions only: else PermissionDeniedError."""
        body = {
            "amount": _cents(amount, models.MIN_AUTO_TOPUP_AMOUNT_CENTS, "auto top-up amount"),
            "threshold": _cents(
                threshold, models.MIN_AUTO_TOPUP_THRESHOLD_CENTS, "auto top-up threshold"
            ),
        }
        return self._call(models.TopupConfigSet, "POST", "topup/config", body=body)

    def delete_topup_config(self) -> None:
        """Turn auto top-up off (dashboard sessions only: else PermissionDeniedError)."""
        self._request("DELETE", "topup/config")

    def set_spending_limit(
        self,
        amount: Decimal,
        duration: models.LimitDuration,
        strategy: models.LimitStrategy,
    ) -> None:
        """Set the account-wide spending limit (deprecated upstream: PermissionDeniedError now)."""
        if duration not in ("daily", "weekly", "monthly"):
            raise _invalid(f"duration must be daily, weekly or monthly, not {duration!r}")
        if strategy not in ("fixed", "sliding"):
            raise _invalid(f"strategy must be fixed or sliding, not {strategy!r}")
        cents = _cents(amount, models.MIN_SPENDING_LIMIT_CENTS, "spending limit")
        body = {"amount": cents, "duration": duration, "strategy": strategy}
        self._request("POST", "spending-limit", body=body)

    def delete_spending_limit(self) -> None:
        """Remove the account-wide spending limit (the one change still allowed upstream)."""
        self._request("DELETE", "spending-limit")

    # ------------------------------------------------------------ plumbing

    def _call[T: pydantic.BaseModel](
        self, model: type[T], method: str, endpoint: str, **request: Any
    ) -> T:
        result = self._request(method, endpoint, **request)
        try:
            return model.model_validate(result)
        except pydantic.ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            raise errors.BillingResponseError(
                f"{method} {endpoint}: unexpected result shape: "
                f"{err.error_count()} problem(s), first at {where} ({first['msg']})"
            ) from None

    def _request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        retries = self.max_retries if method == "GET" else 0
        attempt = 0
        started = time.monotonic()
        try:
            while True:
                delay: float | None
                try:
                    response = self._send(method, endpoint, params, body)
                except errors.BillingConnectionError as err:
                    if attempt == retries:
                        self._log(method, endpoint, started, attempt, None, type(err).__name__)
                        raise
                    delay = self._backoff(attempt + 1)
                else:
                    retryable = attempt < retries and response.status_code in RETRYABLE_STATUSES
                    delay = self._retry_delay(response, attempt + 1) if retryable else None
                    if delay is None:
                        status = response.status_code
                        self._log(method, endpoint, started, attempt, status, f"{status // 100}xx")
                        return self._result(f"{method} {endpoint}", response)
                attempt += 1
                UPSTREAM_RETRIES.labels(endpoint, method).inc()
                self._sleep(delay)
        except errors.BillingError as err:
            UPSTREAM_ERRORS.labels(endpoint, method, type(err).__name__).inc()
            raise

    def _send(
        self, method: str, endpoint: str, params: Mapping[str, str] | None, body: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if current_request := request_id.get():
            headers["X-Request-ID"] = current_request
        started = time.perf_counter()
        outcome = "connection_error"
        try:
            response = self._http.request(
                method,
                self._prefix + endpoint,
                params=params,
                json=body,
                headers=headers,
                timeout=self._timeout,
            )
            outcome = f"{response.status_code // 100}xx"
            return response
        except httpx.TimeoutException as err:
            outcome = "timeout"
            raise errors.BillingTimeout(
                f"{method} {endpoint}: no answer in time ({type(err).__name__})"
            ) from None
        except httpx.HTTPError as err:
            raise errors.BillingConnectionError(
                f"{method} {endpoint}: {type(err).__name__}: {self._scrub(str(err))}"
            ) from None
        finally:
            UPSTREAM_REQUESTS.labels(endpoint, method, outcome).inc()
            UPSTREAM_LATENCY.labels(endpoint, method).observe(time.perf_counter() - started)

    def _retry_delay(self, response: httpx.Response, attempt: int) -> float | None:
        retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None:
            return self._backoff(attempt)
        return retry_after if retry_after <= RETRY_AFTER_CAP else None

    def _backoff(self, attempt: int) -> float:
        # Jittered exponential backoff, so that many workers do not retry in step.
        ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
        return float(ceiling * random.uniform(0.5, 1.0))

    def _result(self, call: str, response: httpx.Response) -> Any:
        try:
            # Decimal: money keeps its exact wire digits, and a whole number too long for
            # int() (4,300+ digits) still parses, to be judged by the models.
            payload = json.loads(response.content, parse_float=Decimal, parse_int=Decimal)
        except (ValueError, RecursionError):  # nested too deep for the parser: not JSON to us
            if response.is_success:
                raise errors.BillingResponseError(
                    f"{call}: answer is not JSON (HTTP {response.status_code})"
                ) from None
            payload = None
        try:
            envelope: models.Envelope | None = models.Envelope.model_validate(payload)
        except pydantic.ValidationError:
            if response.is_success:
                raise errors.BillingResponseError(
                    f"{call}: answer is not a Cloudflare envelope"
                ) from None
            envelope = None
        if envelope is None or not envelope.success or not response.is_success:
            raise self._status_error(call, response, envelope)
        return envelope.result

    def _status_error(
        self, call: str, response: httpx.Response, envelope: models.Envelope | None
    ) -> errors.BillingStatusError:
        status = response.status_code
        details = tuple(
            errors.CloudflareErrorDetail(e.code, self._scrub(e.message))
            for e in (envelope.errors if envelope else [])
        )
        described = "; ".join(str(d) for d in details) or response.reason_phrase or "no detail"
        answered = "success: false" if response.is_success else f"HTTP {status}"
        other = errors.UpstreamError if status >= 500 else errors.BillingStatusError
        message = f"{call} answered {answered}: {described}"
        cf_ray = response.headers.get("cf-ray")
        error = _STATUS_ERRORS.get(status, other)(
            message, status_code=status, errors=details, request_id=cf_ray
        )
        if isinstance(error, errors.RateLimitedError):
            error.retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        return error

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "[token]")  # the constructor refuses an empty token

    def _log(
        self,
        method: str,
        endpoint: str,
        started: float,
        retries: int,
        status: int | None,
        outcome: str,
    ) -> None:
        fields = {
            "endpoint": f"{method} {endpoint}",
            "method": method,
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "retries": retries,
            "outcome": outcome,
            "account_id": self.account_id,
        }
        # One line for plain logs, the same as fields for JSON ones (the request id comes from
        # the caller's logging filter).
        logger.info(
            "billing_api %(endpoint)s status=%(status)s duration_ms=%(duration_ms).0f "
            "retries=%(retries)d outcome=%(outcome)s",
            fields,
            extra=fields,
        )
