"""The only exceptions that leave billing_api.

BillingError
├── BillingConnectionError          the request did not get an answer
│   └── BillingTimeout
├── BillingStatusError              Cloudflare answered with an error
│   ├── AuthenticationError         401
│   ├── PermissionDeniedError       403
│   ├── NotFoundError               404
│   ├── ValidationError             400 / 422, and arguments refused before sending
│   ├── RateLimitedError            429 (retry_after)
│   └── UpstreamError               5xx
└── BillingResponseError            an answer that does not parse
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CloudflareErrorDetail:
    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BillingError(Exception):
    #: Words a finance person understands, safe to show on a page.
    user_message = "The billing service could not be reached."


class BillingConnectionError(BillingError):
    user_message = "Cloudflare's billing service could not be reached. Try again in a minute."


class BillingTimeout(BillingConnectionError):
    user_message = "Cloudflare's billing service took too long to answer. Try again in a minute."


class BillingStatusError(BillingError):
    user_message = "Cloudflare's billing service answered with an error."

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None,
        errors: tuple[CloudflareErrorDetail, ...] = (),
        request_id: str | None = None,
    ) -> None:
        # status_code is None when the client refused the arguments before sending.
        super().__init__(message)
        self.status_code = status_code
        self.errors = errors
        self.request_id = request_id

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(e.code for e in self.errors)


class AuthenticationError(BillingStatusError):
    user_message = (
        "Cloudflare did not accept the dashboard's API token. An administrator must replace it."
    )


class PermissionDeniedError(BillingStatusError):
    user_message = "Cloudflare refused this request: the API token is not allowed to do it."


class NotFoundError(BillingStatusError):
    user_message = "Cloudflare does not know this account, or it has no AI Gateway billing."


class ValidationError(BillingStatusError):
    user_message = "Cloudflare refused the values sent."


class RateLimitedError(BillingStatusError):
    user_message = "Cloudflare is limiting how often we may ask. Try again in a few minutes."
    #: Seconds Cloudflare asked us to wait (its Retry-After header), when it said.
    retry_after: float | None = None

    def __init__(self, message: str, *, status_code: int | None = 429, **details: Any) -> None:
        super().__init__(message, status_code=status_code, **details)


class UpstreamError(BillingStatusError):
    user_message = "Cloudflare's billing service is having trouble. Try again in a few minutes."


class BillingResponseError(BillingError):
    user_message = "Cloudflare's billing service sent an answer we could not read."
