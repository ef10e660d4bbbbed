"""Following up top-ups without a browser open: each follow-up job asks about a pending top-up
(after a few minutes, its invoice too), or looks for an unknown one's charge until its window
has passed, then defers the next (``FOLLOW_UP_BACKOFF``). Nothing here creates a payment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import formats, timezone

from billing_api import errors
from dashboard.infra import billing, clock
from dashboard.models import Topup
from dashboard.services import audit, topups

logger = logging.getLogger(__name__)

#: At most this many abandoned top-ups are taken up per check.
PER_ROUND = 20
#: Still "creating" this long after (the call's timeout is seconds): its process died.
ABANDONED_AFTER = timedelta(minutes=5)
ABANDONED = (
    "The dashboard stopped while sending it to Cloudflare: it may or may not have been charged."
)
#: From this follow-up on (about 5 minutes in), a paid invoice of a pending top-up's payment
#: id means the money is in.
INVOICES_AFTER = 3


@dataclass(frozen=True)
class FollowUp:
    topup_id: int
    status: str
    #: What the page says about it, or "" when Cloudflare simply answered.
    note: str
    #: When to ask again (None: settled, or given up).
    retry_in: timedelta | None = None


def adopt_abandoned(now: datetime) -> int:
    """Top-ups left "creating" by a process that died while sending become unknown (audited):
    the card may have been charged, so they are looked for, never sent again."""
    adopted = 0
    old = Topup.objects.filter(status=Topup.Status.CREATING, created_at__lt=now - ABANDONED_AFTER)
    for pk in old.values_list("pk", flat=True)[:PER_ROUND]:
        # Conditional: of two workers, one adopts it.
        with transaction.atomic():
            if not Topup.objects.filter(pk=pk, status=Topup.Status.CREATING).update(
                status=Topup.Status.UNKNOWN, error=ABANDONED, follow_up_at=now, updated_at=now
            ):
                continue
            topups.defer_follow_up(pk, timedelta(0))
        topup = Topup.objects.get(pk=pk)
        audit.record(
            AnonymousUser(),
            topup.account_id,
            audit.Action.TOPUP,
            audit.Outcome.UNKNOWN,
            after={"amount": topup.amount},
            detail=ABANDONED,
            idempotency_key=topup.idempotency_key,
            actor=topups.FOLLOW_UP_ACTOR,
        )
        logger.warning("top-up %s for account %s: abandoned while sending", pk, topup.account_id)
        adopted += 1
    return adopted


def follow_up(topup_id: int) -> FollowUp:
    topup = Topup.objects.get(pk=topup_id)
    now = clock.now()
    if topup.status not in topups.WAITING or topup.follow_up_at is None:
        return FollowUp(topup.pk, topup.status, "")
    if topup.follow_up_at > now:
        return FollowUp(topup.pk, topup.status, "", topup.follow_up_at - now)
    note, go_on = _ask(topup)
    topup.refresh_from_db()
    go_on = go_on and topup.status in topups.WAITING
    attempts = topup.follow_ups + 1
    wait = topups.FOLLOW_UP_BACKOFF[min(attempts, len(topups.FOLLOW_UP_BACKOFF) - 1)]
    next_at = now + wait if go_on else None
    if note and next_at is not None:
        note += f" The dashboard asks again at {_time(next_at)}."
    Topup.objects.filter(pk=topup.pk).update(
        follow_ups=attempts,
        follow_up_at=next_at,
        follow_up_note=note if topup.status in topups.WAITING else "",
    )
    return FollowUp(topup.pk, topup.status, note, wait if go_on else None)


def _ask(topup: Topup) -> tuple[str, bool]:
    """(what to tell the page, whether to ask again)."""
    if topup.status == Topup.Status.PENDING and topup.payment_intent_id:
        return _ask_status(topup)
    if topup.status == Topup.Status.UNKNOWN and not topup.payment_intent_id:
        said = topups.reconcile(AnonymousUser(), topup, actor=topups.FOLLOW_UP_ACTOR)
        # Past its charge window with nothing found: the page says it most likely failed.
        return said, said != topups.NOT_FOUND_IN_TIME
    return "", False


def _ask_status(topup: Topup) -> tuple[str, bool]:
    try:
        answer = billing.client_for(topup.account_id).topup_status(topup.payment_intent_id)
    except errors.NotFoundError:
        return _look_in_invoices(topup, "Cloudflare no longer knows this payment id")
    except errors.BillingError as err:
        logger.warning(
            "top-up %s for account %s: status could not be asked (%s)",
            topup.pk,
            topup.account_id,
            type(err).__name__,
        )
        return f"Cloudflare could not be asked where it stands: {err.user_message}", True
    if answer.status == "completed":
        topups.complete(topup)
        return "", False
    if topup.follow_ups >= INVOICES_AFTER:
        return _look_in_invoices(topup, "")
    return "", True


def _look_in_invoices(topup: Topup, why: str) -> tuple[str, bool]:
    """Completes it if its invoice is paid; else says why it is still pending."""
    paid, error = topups.paid_invoice(topup)
    if paid:
        topups.complete(topup)
        return "", False
    if error:
        return error, True
    return (f"{why}, and its invoice is not paid yet." if why else ""), True


def _time(moment: datetime) -> str:
    """The time as "20:15 UTC", in the reporting time zone the pages use."""
    local = timezone.localtime(moment)
    return f"{formats.date_format(local, 'H:i')} {local.tzname()}"
