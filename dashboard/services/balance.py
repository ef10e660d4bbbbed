"""The balance card: balance, card on file and auto top-up in words. It never raises for an
upstream failure; it carries the failure in words a finance person understands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing_api import models
from dashboard.infra import upstream
from dashboard.services import reads
from dashboard.services.rules import describe_rule, rule_of

# Stripe's brand codes, as Cloudflare passes them on; anything else is shown as sent.
CARD_BRANDS = {
    "amex": "American Express",
    "diners": "Diners Club",
    "discover": "Discover",
    "eftpos_au": "eftpos",
    "jcb": "JCB",
    "mastercard": "Mastercard",
    "unionpay": "UnionPay",
    "visa": "Visa",
}
AUTO_TOPUP_OFF = "Auto top-up is off."
# Cloudflare's disabledReason codes seen so far, in words; anything else is shown as sent.
DISABLED_REASONS = {
    "no_payment_method": "there is no payment method on file",
    "payment_failed": "the payment failed",
    "card_declined": "the card was declined",
    "insufficient_funds": "the card has insufficient funds",
    "expired_card": "the card has expired",
}


@dataclass(frozen=True)
class TopupFailure:
    """The last failed auto top-up: Cloudflare's error, and why the rule stopped, in words."""

    error: str | None
    reason: str | None
    failed_at: datetime | None


@dataclass(frozen=True)
class BalanceCard:
    """``error`` without a balance: nothing else to show; with one: the last good values."""

    balance: Decimal | None = None
    payment_method: str | None = None
    auto_topup: str = AUTO_TOPUP_OFF
    auto_topup_on: bool = False
    topup_failure: TopupFailure | None = None
    error: str | None = None
    as_of: datetime | None = None

    @property
    def stale(self) -> bool:
        return self.error is not None and self.balance is not None


def balance_card(account_id: str) -> BalanceCard:
    """The balance card for a configured account, through the shared upstream cache."""
    return card_from_fetched(reads.credit_balance(account_id))


def card_from_fetched(fetched: upstream.Fetched[models.CreditBalance]) -> BalanceCard:
    balance = fetched.value
    if balance is None:
        return BalanceCard(error=fetched.error, as_of=fetched.as_of)
    config = balance.topup_config
    failure = None
    if config.has_failed:
        failure = TopupFailure(
            error=config.error,
            reason=describe_stop_reason(config.disabled_reason),
            failed_at=config.last_failed_at,
        )
    return BalanceCard(
        balance=balance.balance,
        payment_method=describe_payment_method(balance.payment_method),
        auto_topup=describe_auto_topup(balance),
        auto_topup_on=config.is_set and not config.disabled_reason,
        topup_failure=failure,
        error=fetched.error or None,
        as_of=fetched.as_of,
    )


def describe_payment_method(method: models.PaymentMethod | None) -> str | None:
    """ "Visa •••• 4242", or None when there is no card on file."""
    if method is None or not (method.brand or method.last4):
        return None
    brand = (method.brand or "").strip()
    name = CARD_BRANDS.get(brand.lower(), brand) or "Card"
    if method.last4:
        return f"{name} \u2022\u2022\u2022\u2022 {method.last4}"
    return name


def describe_auto_topup(balance: models.CreditBalance) -> str:
    rule = rule_of(balance)
    if rule is None:
        return AUTO_TOPUP_OFF
    words = describe_rule(*rule)
    if balance.topup_config.disabled_reason:
        # Cloudflare keeps the rule but stops applying it after a failure.
        return f"Stopped. The rule was: {words[0].lower()}{words[1:]}"
    return words


def describe_stop_reason(code: str | None) -> str | None:
    if not code:
        return None
    words = DISABLED_REASONS.get(code.strip().lower())
    if words:
        return f"Auto top-up was stopped because {words}."
    return f"Auto top-up was stopped. Cloudflare's reason: {code}"
