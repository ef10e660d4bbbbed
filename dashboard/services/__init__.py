"""What views need, composed from the BillingClient through ``dashboard.infra.upstream``.

One module per subject; views import the functions from here and stay thin.
"""

from __future__ import annotations

from dashboard.services.balance import (
    BalanceCard,
    TopupFailure,
    balance_card,
    card_from_fetched,
    describe_auto_topup,
    describe_payment_method,
    describe_stop_reason,
)

__all__ = [
    "BalanceCard",
    "TopupFailure",
    "balance_card",
    "card_from_fetched",
    "describe_auto_topup",
    "describe_payment_method",
    "describe_stop_reason",
]
