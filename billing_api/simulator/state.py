"""Per-account state of the simulator: seeded usage, balance, top-ups, invoices and rules.

Units as the adapter reads them: money in US cents (the balance may be fractional), invoice
times in Unix seconds, usage times and ``lastFailedAt`` in Unix milliseconds. Randomness is
seeded with a SHA-256 of (seed, account id, purpose), never Python's salted ``hash()``, so a
seed gives the same data in every process.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

HOUR: Final = 3600
DAY: Final = 86_400
HISTORY_DAYS: Final = 90

MIN_TOPUP_CENTS: Final = 1000
CURRENCY_LIMITS: Final = "USD"  # topup/limits documents an ISO 4217 code, example "USD"
CURRENCY_INVOICE: Final = "usd"  # Stripe spells invoice currencies in lower case
PDF_BASE: Final = "https://pay.stripe.com/invoice/acct_1Simulated"

_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

#: (line description, price per token in cents as Stripe's decimal string)
MODELS: Final[tuple[tuple[str, str], ...]] = (
    ("OpenAI gpt-4o tokens", "0.0005"),
    ("OpenAI gpt-4o-mini tokens", "0.00003"),
    ("Anthropic claude-sonnet-4 tokens", "0.0006"),
    ("Anthropic claude-3-5-haiku tokens", "0.00016"),
    ("Google gemini-2.5-flash tokens", "0.00006"),
    ("Workers AI llama-3.1-8b-instruct tokens", "0.000028"),
)

_WEEKDAY_FACTOR: Final = (1.0, 1.0, 1.0, 1.0, 0.95, 0.45, 0.35)  # Monday first
_PEAK_LOCAL_HOUR: Final = 14.0


def _diurnal(local_hour: float) -> float:
    # Business hours: a broad afternoon peak over a night-time floor of batch jobs.
    return 0.3 + 1.6 * math.exp(-(((local_hour - _PEAK_LOCAL_HOUR) / 3.2) ** 2))


# Mean of the weekly shape, so that a profile's daily_cents is the real average.
_SHAPE_MEAN: Final = sum(_WEEKDAY_FACTOR) / 7 * sum(_diurnal(h) for h in range(24)) / 24


def _digest(parts: tuple[object, ...]) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()


def stable_rng(*parts: object) -> random.Random:
    return random.Random(int.from_bytes(_digest(parts)[:8], "big"))


def stable_token(length: int, *parts: object) -> str:
    number, base = int.from_bytes(_digest(parts)), len(_ALPHABET)
    return "".join(_ALPHABET[number // base**i % base] for i in range(length))


def hour_floor(moment: float) -> int:
    """The index (hours since the epoch) of the hour containing ``moment``."""
    return math.floor(moment / HOUR)


@dataclass
class PaymentMethod:
    id: str
    brand: str
    last4: str


@dataclass
class TopupConfig:
    amount: int | None = None
    threshold: int | None = None
    error: str | None = None
    last_failed_at_ms: int | None = None
    disabled_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "threshold": self.threshold,
            "disabledReason": self.disabled_reason,
            "error": self.error,
            "lastFailedAt": self.last_failed_at_ms,
        }


@dataclass
class SpendingLimit:
    amount: int | None = None
    duration: str | None = None
    strategy: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"enabled": self.amount is not None, "config": asdict(self)}


@dataclass
class Invoice:
    id: str
    amount: int
    created: int
    origin: Literal["auto", "manual"]
    created_by: str
    status: Literal["paid", "open", "void"] = "paid"

    def as_json(self) -> dict[str, Any]:
        kind = "auto top-up" if self.origin == "auto" else "top-up"
        return {
            "id": self.id,
            "amount_due": self.amount,
            "amount_paid": self.amount if self.status == "paid" else 0,
            "amount_remaining": self.amount if self.status == "open" else 0,
            "currency": CURRENCY_INVOICE,
            "attempt_count": 0 if self.status == "void" else (2 if self.status == "open" else 1),
            "attempted": self.status != "void",
            "auto_advance": self.status == "open",
            "created": self.created,
            "created_by": self.created_by,
            "description": f"AI Gateway Unified Billing credits ({kind})",
            "invoice_origin": self.origin,
            "invoice_pdf": f"{PDF_BASE}/{self.id}/pdf",
            "status": self.status,
        }


@dataclass
class Topup:
    payment_intent_id: str
    amount: int
    created_at: float
    settles_at: float
    created_by: str
    status: Literal["pending", "completed"] = "pending"


@dataclass
class UsageProfile:
    daily_cents: float
    utc_offset_hours: int
    growth: float
    spike_chance: float


@dataclass
class Account:
    """One account's mutable state. The simulator holds its lock while touching it."""

    account_id: str
    seed: int
    origin_hour: int
    settled_hour: int
    profile: UsageProfile
    balance: float
    payment_method: PaymentMethod | None
    max_topup_cents: int
    topup_config: TopupConfig = field(default_factory=TopupConfig)
    spending_limit: SpendingLimit = field(default_factory=SpendingLimit)
    invoices: list[Invoice] = field(default_factory=list)
    topups: dict[str, Topup] = field(default_factory=dict)
    first_topup_success: bool = False
    #: Armed by Simulator.fail_auto_topup: (error, disabled_reason) for the next auto top-up.
    auto_topup_failure: tuple[str, str] | None = None
    #: Spend multiplied by a factor over hours [start, end) (Simulator.boost_usage).
    boosts: list[tuple[int, int, float]] = field(default_factory=list)
    _usage_cache: dict[int, float] = field(default_factory=dict, repr=False)
    _serial: int = 0

    def hour_usage(self, hour: int) -> float:
        """Spend in cents during the hour with this index; nothing before the history starts."""
        if hour < self.origin_hour:
            return 0.0
        value = self._usage_cache.get(hour)
        if value is None:
            value = self._usage_cache[hour] = self._seeded_usage(hour)
        for start, end, factor in self.boosts:
            if start <= hour < end:
                value = round(value * factor, 2)
        return value

    def _seeded_usage(self, hour: int) -> float:
        rng = stable_rng(self.seed, self.account_id, "usage", hour)
        profile = self.profile
        # The shape follows the team's own working day, not UTC's.
        local = datetime.fromtimestamp((hour + profile.utc_offset_hours) * HOUR, tz=UTC)
        trend = 1 + profile.growth * (hour - self.origin_hour) / (HISTORY_DAYS * 24)
        value = (
            profile.daily_cents
            / 24
            / _SHAPE_MEAN
            * _WEEKDAY_FACTOR[local.weekday()]
            * _diurnal(local.hour)
            * max(trend, 0.1)
            * rng.lognormvariate(0, 0.25)
        )
        if rng.random() < profile.spike_chance:
            value *= rng.uniform(2.5, 5.0)  # a batch job
        return round(value, 2)

    def usage_between(self, start_hour: int, end_hour: int) -> float:
        """Spend in cents over the hours [start_hour, end_hour), only hours already over."""
        end_hour = min(end_hour, self.settled_hour)
        total = sum(self.hour_usage(h) for h in range(max(start_hour, self.origin_hour), end_hour))
        return round(total, 2)

    def advance(self, now: float) -> None:
        """Spend every hour that ended by ``now``, settling top-ups in time order."""
        last_complete = hour_floor(now)  # hours before this index are over
        pending = sorted(
            (t for t in self.topups.values() if t.status == "pending" and t.settles_at <= now),
            key=lambda t: t.settles_at,
        )
        index = 0
        while self.settled_hour < last_complete:
            hour_end = (self.settled_hour + 1) * HOUR
            while index < len(pending) and pending[index].settles_at <= hour_end:
                self._complete_topup(pending[index])
                index += 1
            self.balance = round(self.balance - self.hour_usage(self.settled_hour), 2)
            self.settled_hour += 1
            self._check_auto_topup(hour_end)
        for topup in pending[index:]:
            self._complete_topup(topup)

    def _next_id(self) -> str:
        self._serial += 1
        return "in_1" + stable_token(24, self.seed, self.account_id, "id", self._serial)

    def _complete_topup(self, topup: Topup) -> None:
        topup.status = "completed"
        self.balance = round(self.balance + topup.amount, 2)
        self.first_topup_success = True
        self.invoices.append(
            Invoice(
                id=topup.payment_intent_id,
                amount=topup.amount,
                created=int(topup.created_at),
                origin="manual",
                created_by=topup.created_by,
            )
        )

    def _check_auto_topup(self, moment: float) -> None:
        config = self.topup_config
        if config.amount is None or config.threshold is None or config.disabled_reason:
            return
        if self.balance >= config.threshold:
            return
        failure = self.auto_topup_failure
        if failure is None and self.payment_method is None:
            failure = ("No default payment method on file.", "no_payment_method")
        if failure is not None:
            self.auto_topup_failure = None
            config.error, config.disabled_reason = failure
            config.last_failed_at_ms = int(moment * 1000)
            return
        self.balance = round(self.balance + config.amount, 2)
        self.invoices.append(
            Invoice(self._next_id(), config.amount, int(moment), "auto", "auto-topup")
        )

    def create_topup(
        self, amount: int, now: float, settle_seconds: float, created_by: str
    ) -> Topup:
        topup = Topup(
            payment_intent_id=self._next_id(),
            amount=amount,
            created_at=now,
            settles_at=now + settle_seconds,
            created_by=created_by,
        )
        self.topups[topup.payment_intent_id] = topup
        return topup

    def client_secret(self, topup: Topup) -> str:
        token = stable_token(24, self.seed, self.account_id, "pi", topup.payment_intent_id)
        secret = stable_token(24, self.seed, self.account_id, "secret", topup.payment_intent_id)
        return f"pi_{token}_secret_{secret}"

    def topup_status(self, payment_intent_id: str) -> str | None:
        if (topup := self.topups.get(payment_intent_id)) is not None:
            return topup.status
        paid = any(i.id == payment_intent_id and i.status == "paid" for i in self.invoices)
        return "completed" if paid else None

    def credit_balance(self) -> dict[str, Any]:
        method = self.payment_method
        return {
            "balance": self.balance,
            "has_default_payment_method": method is not None,
            "payment_method": None
            if method is None
            else {"brand": method.brand, "last4": method.last4},
            "topup_config": self.topup_config.as_json(),
            "first_topup_success": self.first_topup_success,
        }

    def invoice_preview(self, now: float) -> dict[str, Any]:
        moment = datetime.fromtimestamp(now, tz=UTC)
        start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        end = datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)
        period_start, period_end = int(start.timestamp()), int(end.timestamp())
        month_to_date = round(self.usage_between(period_start // HOUR, period_end // HOUR))
        rng = stable_rng(self.seed, self.account_id, "models")
        chosen = rng.sample(MODELS, rng.randint(3, 5))
        weights = [rng.uniform(0.2, 1.0) for _ in chosen]
        lines = []
        left = month_to_date
        for position, ((description, unit), weight) in enumerate(zip(chosen, weights, strict=True)):
            last = position == len(chosen) - 1
            amount = left if last else min(left, round(month_to_date * weight / sum(weights)))
            left -= amount
            lines.append(
                {
                    "amount": amount,
                    "currency": CURRENCY_INVOICE,
                    "description": description,
                    "period": {"start": period_start, "end": period_end},
                    "pricing": {"unit_amount_decimal": unit},
                    "quantity": round(amount / float(unit)),
                }
            )
        return {
            "id": "upcoming_in_" + stable_token(24, self.seed, self.account_id, "upcoming", start),
            "amount_due": month_to_date,
            "amount_paid": 0,
            "amount_remaining": month_to_date,
            "currency": CURRENCY_INVOICE,
            "period_start": period_start,
            "period_end": period_end,
            "status": "draft",
            "invoice_lines": lines,
        }


def seed_account(seed: int, account_id: str, index: int, now: float) -> Account:
    """Build an account's history: 90 days of usage up to ``now`` and ~30 past invoices. The
    second account served (index 1) has no card and no auto top-up, so the dashboard's "no card"
    paths can be seen; the first has both plus a legacy spending limit."""
    rng = stable_rng(seed, account_id, "profile")
    now_hour = hour_floor(now)
    profile = UsageProfile(
        daily_cents=10 ** rng.uniform(3.2, 4.3),  # about $16 to $200 a day
        utc_offset_hours=rng.choice((-8, -5, 0, 1, 2, 9)),
        growth=rng.uniform(-0.1, 0.5),
        spike_chance=rng.uniform(0.003, 0.02),
    )
    has_card = index != 1
    brand, last4 = "visa", "4242"  # Stripe's test card, recognisable in a demo
    if index > 1:
        brand, last4 = rng.choice(("visa", "mastercard", "amex")), f"{rng.randint(0, 9999):04d}"
    card_id = "pm_1" + stable_token(23, seed, account_id, "pm")
    card = PaymentMethod(card_id, brand, last4) if has_card else None
    account = Account(
        account_id=account_id,
        seed=seed,
        origin_hour=now_hour - HISTORY_DAYS * 24,
        settled_hour=now_hour,
        profile=profile,
        balance=round(profile.daily_cents * rng.uniform(6, 25), 2),
        payment_method=card,
        max_topup_cents=100_000 if index == 0 else rng.choice((100_000, 250_000, 500_000)),
    )
    daily = profile.daily_cents
    if has_card and (index == 0 or rng.random() < 0.5):
        account.topup_config.threshold = max(500, round(daily * 3 / 500) * 500)
        amount = max(1000, round(daily * 10 / 1000) * 1000)
        account.topup_config.amount = min(amount, account.max_topup_cents)
    if index == 0:
        account.spending_limit = SpendingLimit(
            amount=max(100, round(daily * 40 / 100) * 100), duration="monthly", strategy="fixed"
        )
    _seed_invoices(account, rng, now, 30 if has_card else 4)
    account.first_topup_success = any(
        i.origin == "manual" and i.status == "paid" for i in account.invoices
    )
    return account


def _seed_invoices(account: Account, rng: random.Random, now: float, count: int) -> None:
    start = account.origin_hour * HOUR
    times = sorted(rng.randint(start, int(now) - HOUR) for _ in range(count))
    people = ("finance@example.com", "ops-lead@example.com", "billing-admin@example.com")
    rule = account.topup_config.amount
    for created in times:
        auto = rule is not None and rng.random() < 0.6
        amount = rule if auto and rule else rng.choice((1000, 2500, 5000, 10_000, 20_000, 50_000))
        account.invoices.append(
            Invoice(
                id=account._next_id(),
                amount=min(amount, account.max_topup_cents),
                created=created,
                origin="auto" if auto else "manual",
                created_by="auto-topup" if auto else rng.choice(people),
            )
        )
    manual = [i for i in account.invoices if i.origin == "manual"]
    if len(manual) >= 2:
        # One abandoned payment and one that was voided, as real histories have.
        first, second = rng.sample(manual, 2)
        first.status = "open"
        second.status = "void"
