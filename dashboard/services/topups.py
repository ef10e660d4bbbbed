"""One-off top-ups. No payment twice: a top-up is first a row, inserted with the form's
idempotency key (unique per account), and only the request that inserted it calls Cloudflare.
A ``POST topup`` without a trustworthy answer may have charged the card: the row is ``unknown``,
never sent again, and :func:`reconcile` looks for its charge among the manual invoices."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.cache import cache
from django.core.paginator import Page, Paginator
from django.core.signing import Signer
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from billing_api import errors, models
from dashboard.infra import billing, clock, jobs, upstream
from dashboard.models import Topup
from dashboard.services import audit, invoices, reads
from dashboard.services.balance import describe_payment_method

logger = logging.getLogger(__name__)

#: Cloudflare's documented minimum (``POST topup`` ``amount`` >= 1000 cents).
DOCUMENTED_MINIMUM = models.cents_to_dollars(models.MIN_TOPUP_CENTS)
QUICK_PICKS = (Decimal(25), Decimal(50), Decimal(100), Decimal(250))
KEY_PATTERN = re.compile(r"^[0-9a-f]{32}$")
CONFIRMATION_SALT = "dashboard.topups.confirmation"
HISTORY_PAGE_SIZE = 20
#: Each open page polls every 2 s: one status call per top-up per this long, whatever their number.
STATUS_CACHE_SECONDS = 2
#: A card that needs 3-D Secure stays pending until someone confirms it at Cloudflare.
STUCK_AFTER = timedelta(minutes=10)
#: An unknown top-up's charge is looked for from CLOCK_SKEW before it to CHARGE_WINDOW after;
#: past that with nothing found, it most likely did not go through.
CLOCK_SKEW = timedelta(minutes=2)
CHARGE_WINDOW = timedelta(hours=1)
#: Page views check unknown top-ups older than CHECK_AFTER and younger than AUTO_CHECK_FOR,
#: at most AUTO_CHECK_MAX a view and each once per CHECK_EVERY_SECONDS (a cache marker).
CHECK_AFTER = timedelta(minutes=1)
CHECK_EVERY_SECONDS = 60
AUTO_CHECK_FOR = timedelta(days=1)
AUTO_CHECK_MAX = 5
#: Top-ups whose outcome Cloudflare may still change: the worker follows them up.
WAITING = (Topup.Status.PENDING, Topup.Status.UNKNOWN)
#: The worker's waits before each follow-up (10 s to 15 min, then hourly): most payments settle
#: in seconds, one waiting on 3-D Secure may take hours.
FOLLOW_UP_BACKOFF = tuple(timedelta(seconds=s) for s in (10, 30, 60, 300, 900, 3600))
#: Who the audit log names for a change Cloudflare made and the dashboard followed up.
FOLLOW_UP_ACTOR = "dashboard follow-up"
#: The job that asks about a waiting top-up once (dashboard.tasks).
FOLLOW_UP_TASK = "follow_up_topup"


def defer_follow_up(topup_id: int, wait: timedelta = FOLLOW_UP_BACKOFF[0]) -> None:
    """Unless one is waiting already: each follow-up defers the next until it settles."""
    jobs.defer(FOLLOW_UP_TASK, lock=f"topup-{topup_id}", wait=wait, topup_id=topup_id)


def new_key() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Limits:
    minimum: Decimal
    maximum: Decimal
    #: True when ``maximum`` is this dashboard's ceiling (``TOPUP_MAX_AMOUNT``), not Cloudflare's.
    ceiling: bool


def limits(account_id: str) -> Limits:
    """Cloudflare's limits within ours: the higher minimum, the lower maximum."""
    ceiling: Decimal = settings.TOPUP_MAX_AMOUNT
    value = reads.topup_limits(account_id).value
    if value is None:
        return Limits(DOCUMENTED_MINIMUM, ceiling, ceiling=True)
    return Limits(
        max(value.minimum, DOCUMENTED_MINIMUM),
        min(value.maximum, ceiling),
        ceiling=ceiling < value.maximum,
    )


def confirmation(user: User | AnonymousUser, account_id: str, key: str, amount: Decimal) -> str:
    """Proof that this user was shown this charge: a POST that confirms without it (a script,
    a stale or edited form) is shown the confirmation instead of being charged."""
    return Signer(salt=CONFIRMATION_SALT).signature(f"{user.pk}:{account_id}:{key}:{amount:.2f}")


def confirmed(
    user: User | AnonymousUser, account_id: str, key: str, amount: Decimal, token: str
) -> bool:
    return constant_time_compare(token, confirmation(user, account_id, key, amount))


@dataclass(frozen=True)
class CardOnFile:
    #: "Visa •••• 4242"; None with ``known`` True: no payment method on file.
    name: str | None
    #: False when Cloudflare could not be asked: the top-up may still be tried.
    known: bool

    @property
    def missing(self) -> bool:
        return self.known and self.name is None


def card_on_file(account_id: str) -> CardOnFile:
    balance = reads.credit_balance(account_id).value
    if balance is None:
        return CardOnFile(None, known=False)
    name = describe_payment_method(balance.payment_method)
    if name is None and balance.has_default_payment_method:
        name = "the card on file"
    return CardOnFile(name, known=True)


@dataclass(frozen=True)
class HistoryRow:
    topup: Topup
    card: str


@dataclass(frozen=True)
class History:
    page: Page[Topup]
    rows: list[HistoryRow]


def history(account_id: str, page: int) -> History:
    topups = Topup.objects.filter(account_id=account_id).order_by("-created_at", "-id")
    found = Paginator(topups, HISTORY_PAGE_SIZE).get_page(page)
    return History(found, [HistoryRow(t, card_name(t)) for t in found])


def card_name(topup: Topup) -> str:
    """The card as stored ("visa 4242"), in words ("Visa •••• 4242"); "" when none is."""
    brand, _, last4 = topup.card.partition(" ")
    method = models.PaymentMethod(brand=brand or None, last4=last4 or None)
    return describe_payment_method(method) or ""


def shown(account_id: str, pk: int | None) -> Topup | None:
    """The top-up whose status the page shows: the one asked for, else the newest in flight
    (so a reload without ``?topup=`` keeps the live status, whoever made it)."""
    found = Topup.objects.filter(account_id=account_id)
    if pk is not None:
        return found.filter(pk=pk).first()
    in_flight = (Topup.Status.CREATING, Topup.Status.PENDING)
    return found.filter(status__in=in_flight).order_by("-created_at", "-id").first()


@dataclass(frozen=True)
class Created:
    topup: Topup
    #: False: the key had been used; nothing was sent, this is the earlier top-up.
    sent: bool


def create(user: User | AnonymousUser, account_id: str, amount: Decimal, key: str) -> Created:
    try:
        # Its own transaction, committed before Cloudflare is called: a concurrent insert
        # of the same key waits for this commit, then fails on the unique constraint.
        with transaction.atomic():
            topup = Topup.objects.create(
                account_id=account_id,
                idempotency_key=key,
                amount=amount,
                created_by=user if isinstance(user, User) else None,
                username=user.get_username(),
            )
    except IntegrityError:
        existing = Topup.objects.get(account_id=account_id, idempotency_key=key)
        return Created(existing, sent=False)
    # A top-up changes no setting: there is no "before"; "after" is what was asked for.
    asked: dict[str, object] = {"amount": amount}
    error: errors.BillingError | None = None
    try:
        result = billing.client_for(account_id).create_topup(amount)
    except (errors.BillingConnectionError, errors.BillingResponseError) as err:
        # Sent, but no answer we can trust: Cloudflare may have charged the card.
        _finish(topup, Topup.Status.UNKNOWN, error=err)
        outcome, error = audit.Outcome.UNKNOWN, err
    except errors.BillingError as err:
        _finish(topup, Topup.Status.FAILED, error=err)
        outcome, error = audit.outcome_of(err), err
    except BaseException:
        # Whatever broke, the request may have left: never leave the row "creating".
        _finish(topup, Topup.Status.UNKNOWN, message="The dashboard failed while sending.")
        raise
    else:
        topup.payment_intent_id = result.payment_intent_id
        topup.card = " ".join(part for part in (result.brand, result.last4) if part)
        _finish(topup, Topup.Status.PENDING)
        outcome = audit.Outcome.ACCEPTED
        # client_secret is deliberately left out: it is never stored, shown or logged.
        asked |= {"payment_intent_id": topup.payment_intent_id, "status": topup.status}
    audit.record(
        user, account_id, audit.Action.TOPUP, outcome, after=asked, error=error, idempotency_key=key
    )
    reads.forget(account_id, "credit-balance")
    return Created(topup, sent=True)


def _finish(
    topup: Topup,
    status: Topup.Status,
    *,
    error: errors.BillingError | None = None,
    message: str = "",
) -> None:
    topup.status = status
    if status in WAITING:
        # No browser needs to stay open: the worker asks Cloudflare until it settles.
        topup.follow_up_at = clock.now() + FOLLOW_UP_BACKOFF[0]
    if error is not None:
        message = describe_error(error)
        if isinstance(error, errors.BillingStatusError):
            topup.upstream_status = error.status_code
            topup.request_id = (error.request_id or "")[:64]
        logger.warning(
            "top-up %s for account %s: %s (%s)",
            topup.pk,
            topup.account_id,
            status,
            type(error).__name__,
        )
    topup.error = message
    with transaction.atomic():
        topup.save()
        if status in WAITING:
            defer_follow_up(topup.pk)


def describe_error(error: errors.BillingError) -> str:
    """What went wrong, for the page: Cloudflare's own words when it refused the values."""
    if isinstance(error, errors.BillingConnectionError | errors.BillingResponseError):
        return (
            "We could not tell whether Cloudflare took the payment: "
            + error.user_message.split(". ")[0].rstrip(".")
            + "."
        )
    if isinstance(error, errors.BillingStatusError):
        said = "; ".join(detail.message for detail in error.errors)
        status = error.status_code
        if status is not None and 400 <= status < 500 and status != 429 and said:
            return f"Cloudflare refused the top-up: {said}"
        if status == 200:
            return f"Cloudflare did not accept the top-up: {said or 'no reason given'}"
    return f"{error.user_message} Nothing was charged."


@dataclass(frozen=True)
class Progress:
    topup: Topup
    #: The card charged, in words ("Visa •••• 4242"), or "".
    card: str
    #: Polling goes on while Cloudflare may still change the status.
    polling: bool
    #: Pending long enough that the payment probably waits on the card holder (3-D Secure).
    needs_action: bool
    #: This poll saw it complete: the page refreshes the balance.
    just_completed: bool = False
    #: Asking Cloudflare failed this time; the next poll tries again.
    check_error: str | None = None


def progress(topup: Topup) -> Progress:
    """The top-up's status, asking Cloudflare (at most every few seconds) while it is pending."""
    just_completed = False
    check_error = None
    if topup.status == Topup.Status.PENDING and topup.payment_intent_id:
        key = upstream.cache_key(topup.account_id, "topup-status", {"id": topup.payment_intent_id})
        status: str | None = cache.get(key)
        if status is None:
            try:
                answer = billing.client_for(topup.account_id).topup_status(topup.payment_intent_id)
            except errors.BillingError as err:
                check_error = err.user_message
            else:
                status = answer.status
                cache.set(key, status, STATUS_CACHE_SECONDS)
        if status == "completed":
            complete(topup)
            just_completed = True
    waiting = topup.status in (Topup.Status.CREATING, Topup.Status.PENDING)
    old = timezone.now() - topup.created_at > STUCK_AFTER
    return Progress(
        topup,
        card_name(topup),
        polling=waiting,
        needs_action=waiting and old,
        just_completed=just_completed,
        check_error=check_error,
    )


def complete(topup: Topup) -> None:
    """Record that Cloudflare completed a pending top-up: of the pages polling and the workers,
    the one whose conditional update did adds the settling event to the audit log."""
    now = timezone.now()
    updated = Topup.objects.filter(pk=topup.pk, status=Topup.Status.PENDING).update(
        status=Topup.Status.COMPLETED,
        completed_at=now,
        updated_at=now,
        follow_up_at=None,
        follow_up_note="",
    )
    topup.refresh_from_db()
    if not updated:
        return
    reads.forget(topup.account_id, "credit-balance")
    audit.record(
        AnonymousUser(),
        topup.account_id,
        audit.Action.TOPUP,
        audit.Outcome.ACCEPTED,
        before={"status": Topup.Status.PENDING},
        after={
            "amount": topup.amount,
            "payment_intent_id": topup.payment_intent_id,
            "status": Topup.Status.COMPLETED,
        },
        detail="Cloudflare completed the payment; the balance includes it.",
        idempotency_key=topup.idempotency_key,
        actor=FOLLOW_UP_ACTOR,
    )


NOT_FOUND_IN_TIME = (
    "No charge was found in the invoice list an hour later: the top-up most likely did not "
    "go through. Check Cloudflare's dashboard before trying again."
)


def check_marker(topup: Topup) -> str:
    return upstream.cache_key(topup.account_id, "topup-check", {"id": topup.pk})


def last_check(topup: Topup) -> str | None:
    """What the check of the last minute said, if there was one."""
    said: str | None = cache.get(check_marker(topup))
    return said


def reconcile(
    user: User | AnonymousUser, topup: Topup, *, fresh: bool = True, actor: str = ""
) -> str:
    """What looking for an unknown top-up's charge found, in words ("": nothing to check); it is
    never sent again. Exactly one invoice of its amount in its window, no other top-up's, is its
    payment id; several or none: it stays unknown. ``fresh``: not the cached invoice list."""
    said = _reconcile(user, topup, fresh=fresh, actor=actor)
    cache.set(check_marker(topup), said, CHECK_EVERY_SECONDS)
    return said


def _reconcile(user: User | AnonymousUser, topup: Topup, *, fresh: bool, actor: str) -> str:
    if topup.status != Topup.Status.UNKNOWN or topup.payment_intent_id:
        return ""
    listed, why = manual_invoices(topup.account_id, fresh=fresh)
    if listed is None:
        return f"The check could not be made: {why}"
    taken = set(
        Topup.objects.filter(account_id=topup.account_id)
        .exclude(pk=topup.pk)
        .exclude(payment_intent_id="")
        .values_list("payment_intent_id", flat=True)
    )
    found = candidates(topup, listed, taken)
    if len(found) > 1:
        return "Several charges of this amount were found; check the invoice list."
    if not found and timezone.now() - topup.created_at > CHARGE_WINDOW:
        return NOT_FOUND_IN_TIME
    if not found:
        return "No charge of this amount was found in the invoice list yet."
    payment_id = found[0]
    try:
        answer = billing.client_for(topup.account_id).topup_status(payment_id)
    except errors.BillingError as err:
        return f"The check could not be made: {err.user_message}"
    now = timezone.now()
    status = Topup.Status.COMPLETED if answer.status == "completed" else Topup.Status.PENDING
    # Conditional: of two checks at once, one records it.
    updated = Topup.objects.filter(
        pk=topup.pk, status=Topup.Status.UNKNOWN, payment_intent_id=""
    ).update(
        status=status,
        payment_intent_id=payment_id,
        completed_at=now if status == Topup.Status.COMPLETED else None,
        updated_at=now,
        # Found pending: the worker asks its status from the start of its schedule again.
        follow_up_at=clock.now() + FOLLOW_UP_BACKOFF[0] if status in WAITING else None,
        follow_ups=0,
        follow_up_note="",
    )
    topup.refresh_from_db()
    if not updated:
        return ""
    if status in WAITING:
        defer_follow_up(topup.pk)
    logger.info("top-up %s for account %s reconciled: %s", topup.pk, topup.account_id, status)
    audit.record(
        user,
        topup.account_id,
        audit.Action.TOPUP,
        audit.Outcome.ACCEPTED,
        after={
            "amount": topup.amount,
            "payment_intent_id": payment_id,
            "status": status,
            "reconciled": True,
        },
        idempotency_key=topup.idempotency_key,
        actor=actor,
    )
    if status == Topup.Status.COMPLETED:
        reads.forget(topup.account_id, "credit-balance")
    return "Its charge was found in the invoice list: Cloudflare took the top-up."


def manual_invoices(account_id: str, *, fresh: bool) -> tuple[list[models.Invoice] | None, str]:
    """(the manual invoices, or None and why not); ``fresh``: not the cached list."""
    if fresh:
        reads.forget(account_id, invoices.HISTORY, {"type": "manual"})
    fetched = invoices.invoice_list(account_id, "manual")
    if fetched.value is None or fetched.error is not None:
        return None, fetched.error or "Cloudflare is still being asked."
    return list(fetched.value.invoices), ""


def paid_invoice(topup: Topup) -> tuple[bool, str]:
    """(whether the Stripe invoice of a pending top-up's payment id is paid, what could not be
    read): once it is, the money is in, whatever ``topup/status`` says (it may lag)."""
    listed, why = manual_invoices(topup.account_id, fresh=True)
    if listed is None:
        return False, f"The invoice list could not be read: {why}"
    return any(i.id == topup.payment_intent_id and i.status == "paid" for i in listed), ""


def candidates(topup: Topup, found: Iterable[models.Invoice], taken: set[str]) -> list[str]:
    """Ids of the invoices that may be this top-up's charge (see :func:`reconcile`)."""
    start = topup.created_at - CLOCK_SKEW
    end = topup.created_at + CHARGE_WINDOW
    ids: list[str] = []
    for invoice in found:
        if not invoice.id or invoice.id in taken or invoice.id in ids:
            continue
        if invoice.created is None or not start <= invoice.created <= end:
            continue
        if topup.amount in (invoice.amount_due, invoice.amount_paid):
            ids.append(invoice.id)
    return ids


def reconcile_due(user: User | AnonymousUser, account_id: str) -> None:
    """Check, once a minute at most, the account's recent unknown top-ups a minute old."""
    now = timezone.now()
    due = Topup.objects.filter(
        account_id=account_id,
        status=Topup.Status.UNKNOWN,
        payment_intent_id="",
        created_at__lte=now - CHECK_AFTER,
        created_at__gte=now - AUTO_CHECK_FOR,
    ).order_by("-created_at", "-id")[:AUTO_CHECK_MAX]
    fresh = True
    for topup in due:
        # add() is atomic: of the page views of this minute, one checks.
        if not cache.add(check_marker(topup), "", CHECK_EVERY_SECONDS):
            continue
        # One fresh read of the invoices serves every top-up checked now.
        reconcile(user, topup, fresh=fresh)
        fresh = False
