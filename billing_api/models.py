"""Pydantic models of the AI Gateway billing API's answers; wire units are converted here only.

Units (reference notes, "Units"): request amounts are documented integer US cents. Response
money is undocumented and read as US cents, possibly fractional (``RESPONSE_MONEY_UNIT`` is
the one line to change). Response times are undocumented: a number from 10**11 up is Unix
milliseconds, a smaller one Unix seconds. Money and times are read exactly or refused; codes
and counts (``number`` in the spec) are metadata and read as their whole part.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, Inexact, localcontext
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, SecretStr, model_validator

#: Dollars per unit of money in a response (undocumented upstream) and in a request (cents).
RESPONSE_MONEY_UNIT = Decimal("0.01")
REQUEST_MONEY_UNIT = Decimal("0.01")

#: Documented request minimums, in cents.
MIN_TOPUP_CENTS = 1000
MIN_AUTO_TOPUP_AMOUNT_CENTS = 1000
MIN_AUTO_TOPUP_THRESHOLD_CENTS = 500
MIN_SPENDING_LIMIT_CENTS = 100

MS_THRESHOLD = 10**11
#: Response money at or beyond this many wire units is refused: no real account holds it,
#: and below it Decimal's 28 digits keep every cent of a sum exact.
MAX_RESPONSE_MONEY = Decimal(10) ** 20
#: Codes and counts are capped here (the largest signed 64-bit integer).
MAX_COUNT = 2**63 - 1
#: The largest top-up limit believed from ``topup/limits`` ($10 billion); beyond it the
#: answer is refused and the dashboard falls back as if Cloudflare had not answered.
MAX_TOPUP_LIMIT_CENTS = 10**12

UsageWindow = Literal["day", "hour"]
InvoiceType = Literal["auto", "all", "manual"]
LimitDuration = Literal["daily", "weekly", "monthly"]
LimitStrategy = Literal["fixed", "sliding"]


def _number(value: Any) -> Decimal | None:
    """A JSON number as an exact Decimal; None for anything else (pydantic reports it)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    return number if number.is_finite() else None


def _money(amount: Decimal) -> Decimal:
    # pydantic has made it a Decimal (a float by its str()); converted exactly or refused.
    if amount.copy_abs() >= MAX_RESPONSE_MONEY:
        raise ValueError(f"an amount of {MAX_RESPONSE_MONEY:.0E} cents or more cannot be real")
    with localcontext() as context:
        context.traps[Inexact] = True
        try:
            return amount * RESPONSE_MONEY_UNIT
        except Inexact:
            raise ValueError("an amount with more digits than can be held exactly") from None


def _timestamp(value: Any) -> Any:
    number = _number(value)
    if number is None:
        return value
    seconds = float(number)
    if abs(seconds) >= MS_THRESHOLD:
        seconds /= 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{value} is no calendar date (years 1 to 9999)") from None


def _whole(value: Any) -> Any:
    # Codes and counts are metadata: a fraction is read as its whole part (1000.5 as 1000), and
    # a huge one is capped so that it can still be printed (str() refuses 4,300+ digits).
    number = _number(value)
    if number is None:
        return value
    if number.copy_abs() > MAX_COUNT:
        return MAX_COUNT if number > 0 else -MAX_COUNT
    return int(number)  # int() of a Decimal drops the fraction


#: Money from a response, in dollars.
Money = Annotated[Decimal, AfterValidator(_money)]
#: A time from a response, as an aware UTC datetime.
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
#: A code, page number or count from a response, read as its whole part.
Count = Annotated[int, BeforeValidator(_whole)]


def cents_to_dollars(cents: int) -> Decimal:
    return Decimal(cents) * REQUEST_MONEY_UNIT


class _Model(BaseModel, frozen=True, extra="ignore"):
    """Answers are read by Cloudflare's names only: a key spelled like a Python field name
    (disabled_reason) is an unknown field and is ignored, like any other."""


class ResponseMessage(_Model):
    code: Count
    message: str


class Envelope(_Model):
    """The Cloudflare v4 envelope, the parts read (not ``messages`` nor ``result_info``)."""

    success: bool
    errors: list[ResponseMessage] = Field(default_factory=list)
    result: Any = None


class PaymentMethod(_Model):
    brand: str | None = None
    last4: str | None = None


class TopupConfig(_Model):
    """Auto top-up rule. Cloudflare sends zeros or nulls when none is set."""

    amount: Money | None = None
    threshold: Money | None = None
    disabled_reason: str | None = Field(default=None, alias="disabledReason")
    error: str | None = None
    last_failed_at: Timestamp | None = Field(default=None, alias="lastFailedAt")

    @property
    def is_set(self) -> bool:
        return bool(self.amount) and self.threshold is not None

    @property
    def has_failed(self) -> bool:
        return bool(self.error or self.disabled_reason or self.last_failed_at)


class CreditBalance(_Model):
    balance: Money
    has_default_payment_method: bool
    payment_method: PaymentMethod | None
    topup_config: TopupConfig
    first_topup_success: bool | None = None


class UsageBucket(_Model):
    id: str
    aggregated_value: Money
    start_time: Timestamp
    end_time: Timestamp


class UsageHistory(_Model):
    history: list[UsageBucket]


class Pagination(_Model):
    has_more: bool
    page: Count
    per_page: Count
    total_count: Count


class Invoice(_Model):
    amount_due: Money
    amount_paid: Money
    amount_remaining: Money
    currency: str
    id: str | None = None
    attempt_count: Count | None = None
    created: Timestamp | None = None
    created_by: str | None = None
    description: str | None = None
    invoice_origin: str | None = None
    invoice_pdf: str | None = None
    status: str | None = None


class InvoiceHistory(_Model):
    invoices: list[Invoice]
    pagination: Pagination


class Period(_Model):
    start: Timestamp
    end: Timestamp


class Pricing(_Model):
    # Kept as Cloudflare's string: its unit is undocumented and the two readings conflict.
    unit_amount_decimal: str | None


class PretaxCreditAmount(_Model):
    amount: Money
    type: str


class InvoiceLine(_Model):
    amount: Money
    currency: str
    description: str | None
    period: Period
    pricing: Pricing
    quantity: Decimal
    pretax_credit_amounts: list[PretaxCreditAmount] = Field(default_factory=list)


class InvoicePreview(_Model):
    id: str
    amount_due: Money
    amount_paid: Money
    amount_remaining: Money
    currency: str
    period_start: Timestamp
    period_end: Timestamp
    status: Literal["draft", "open", "paid", "uncollectible", "void"]
    invoice_lines: list[InvoiceLine]


class Topup(_Model):
    # SecretStr keeps the Stripe client secret out of reprs, logs and tracebacks.
    client_secret: SecretStr | None
    onboarding: bool
    payment_intent_id: str
    brand: str | None = None
    last4: str | None = None


class TopupStatus(_Model):
    payment_intent_id: str
    status: Literal["completed", "pending"]


class TopupConfigSet(_Model):
    amount: Money
    threshold: Money


class TopupLimits(_Model):
    """``GET topup/limits``: documented in cents (integers)."""

    min_cents: int
    max_cents: int
    currency: str

    @model_validator(mode="after")
    def _usable_as_bounds(self) -> TopupLimits:
        # These bound what a user may pay: an answer that cannot is refused, not believed.
        if not 0 <= self.min_cents <= self.max_cents <= MAX_TOPUP_LIMIT_CENTS:
            raise ValueError(
                f"limits of {self.min_cents} to {self.max_cents} cents are no usable range"
            )
        return self

    @property
    def minimum(self) -> Decimal:
        return cents_to_dollars(self.min_cents)

    @property
    def maximum(self) -> Decimal:
        return cents_to_dollars(self.max_cents)


class SpendingLimitConfig(_Model):
    amount: Money | None
    duration: str | None
    strategy: str | None


class SpendingLimit(_Model):
    enabled: bool
    config: SpendingLimitConfig
