"""The dashboard's own tables: grants, the audit log, top-ups, refusals, alerts and digests.
Balances, invoices and usage live at Cloudflare and are read through ``billing_api``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


def account_choices() -> list[tuple[str, str]]:
    return [(key, f"{name} ({key})") for key, name in settings.BILLING_ACCOUNTS.items()]


class Dashboard(models.Model):
    """Holds the dashboard's permissions (no rows); roles are groups of them (dashboard.roles)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_overview", "See balance, runway and spend"),
            ("view_usage", "See usage history"),
            ("view_invoices", "See invoices and the upcoming invoice"),
            ("view_topups", "See top-up history"),
            ("export_data", "Download exports (CSV)"),
            ("create_topup", "Make a one-off top-up"),
            ("change_auto_topup", "Change or delete the auto top-up rule"),
            ("change_spending_limit", "Set or remove the spending limit"),
            ("view_activity", "See the activity (audit) log and export it"),
            ("manage_alerts", "See and change alert rules and the auto top-up cap"),
        ]


class AccountAccess(models.Model):
    """A user may see this Cloudflare account. Superusers see every configured account."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_access"
    )
    account_id = models.CharField(max_length=32, choices=account_choices)
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "account access"
        verbose_name_plural = "account access"
        constraints = [
            models.UniqueConstraint(fields=["user", "account_id"], name="one_grant_per_account")
        ]

    def __str__(self) -> str:
        name = settings.BILLING_ACCOUNTS.get(self.account_id, "unconfigured account")
        return f"{self.user} may see {name} ({self.account_id})"


class AuditEvent(models.Model):
    """One attempted change: who, when, which account, what, before, after, outcome, and what
    Cloudflare said. Append-only: here, and in the database by a trigger (migration 0010)
    that allows only clearing ``user`` when that user is deleted."""

    class Action(models.TextChoices):
        TOPUP = "topup.create", "One-off top-up"
        AUTO_TOPUP_SET = "auto_topup.set", "Auto top-up rule saved"
        AUTO_TOPUP_DELETE = "auto_topup.delete", "Auto top-up rule deleted"
        SPENDING_LIMIT_SET = "spending_limit.set", "Spending limit set"
        SPENDING_LIMIT_DELETE = "spending_limit.delete", "Spending limit removed"
        ALERT_RULE_SET = "alert_rule.set", "Alert rule saved"
        ALERT_RULE_DELETE = "alert_rule.delete", "Alert rule deleted"

    class Outcome(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        INVALID = "invalid", "Refused: invalid input"
        FORBIDDEN = "forbidden", "Refused: not allowed"
        REFUSED = "refused", "Refused by Cloudflare"
        FAILED = "failed", "Failed upstream"
        UNKNOWN = "unknown", "Outcome unknown"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    #: Kept as written, so the record survives the user's deletion or renaming.
    username = models.CharField(max_length=150)
    account_id = models.CharField(max_length=32, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    detail = models.TextField(blank=True)
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    upstream_codes = models.JSONField(default=list, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["account_id", "-at"], name="audit_account_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.username} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("audit events are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events are never deleted")


class AppendOnlyError(Exception):
    pass


class Topup(models.Model):
    """A one-off top-up. Unique per (account, idempotency key): of a double click, a retried
    POST, two tabs or two processes, only the request that inserts the row calls Cloudflare."""

    class Status(models.TextChoices):
        CREATING = "creating", "Sending to Cloudflare"
        PENDING = "pending", "Pending"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        #: The POST timed out or broke: charged or not, it is reconciled, never sent again.
        UNKNOWN = "unknown", "Outcome unknown"

    account_id = models.CharField(max_length=32, db_index=True)
    idempotency_key = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATING)
    payment_intent_id = models.CharField(max_length=128, blank=True)
    #: The card charged, as Cloudflare named it ("visa 4242"); never the client secret.
    card = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    #: When the worker next asks where a pending or unknown top-up stands (null: no more).
    follow_up_at = models.DateTimeField(null=True, blank=True)
    follow_ups = models.PositiveSmallIntegerField(default=0)  # the wait grows with it
    follow_up_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account_id", "idempotency_key"], name="one_topup_per_key"
            )
        ]


class RefusedChange(models.Model):
    """Cloudflare refused a kind of change for this account (e.g. 403, dashboard-only), shown
    to the next admin before the form; cleared only when a later attempt succeeds."""

    class Kind(models.TextChoices):
        AUTO_TOPUP = "auto_topup", "Auto top-up rule"
        SPENDING_LIMIT = "spending_limit", "Spending limit"

    account_id = models.CharField(max_length=32)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    refused_at = models.DateTimeField(default=timezone.now)
    refused_by = models.CharField(max_length=150)
    #: What Cloudflare said, in its words (shown escaped).
    message = models.TextField(blank=True)
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account_id", "kind"], name="one_refusal_per_kind")
        ]


class AlertRule(models.Model):
    """A condition on one account, and who is told when it becomes true. It fires once per
    *episode*: again only after clearing past a margin (hysteresis) or after ``repeat_hours``.
    Its state (``active``, ``episode``) is changed only by the alerts worker."""

    class Kind(models.TextChoices):
        BALANCE_BELOW = "balance_below", "Balance below an amount"
        RUNWAY_BELOW = "runway_below", "Runway shorter than a number of days"
        AUTO_TOPUP_FAILED = "auto_topup_failed", "Auto top-up failed or turned off"
        SPEND_SPIKE = "spend_spike", "Spend in the last 24 hours above K × the 7-day burn rate"
        MONTH_TO_DATE_ABOVE = "month_to_date_above", "Month-to-date spend above an amount"
        AUTO_TOPUP_CAP = (
            "auto_topup_cap",
            "Monthly cap: automatic top-ups this month reach an amount (turns auto top-up off)",
        )

    class WebhookFormat(models.TextChoices):
        JSON = "json", "JSON"
        SLACK = "slack", "Slack-compatible"

    account_id = models.CharField(max_length=32, db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    days = models.PositiveSmallIntegerField(null=True, blank=True)
    #: K: how many times the burn per day (last 7 complete days) the last 24 hours may reach.
    factor = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    emails = models.TextField(blank=True)  # one per line, as webhooks
    webhooks = models.TextField(blank=True)
    webhook_format = models.CharField(
        max_length=8, choices=WebhookFormat.choices, default=WebhookFormat.JSON
    )
    repeat_hours = models.PositiveSmallIntegerField(default=24)
    enabled = models.BooleanField(default=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # The worker's state.
    active = models.BooleanField(default=False)
    episode = models.PositiveIntegerField(default=0)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    last_cleared_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    #: What the last check saw, in words ("balance $12.40"), or why it could not check.
    last_seen = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["account_id", "id"]

    def email_list(self) -> list[str]:
        return split_lines(self.emails)

    def webhook_list(self) -> list[str]:
        return split_lines(self.webhooks)


def split_lines(text: str) -> list[str]:
    """The non-blank lines of ``text``, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


class AlertFiring(models.Model):
    """One firing of a rule: the first of an episode (``repeat`` 0) or a reminder. Unique per
    (rule, episode, repeat): of two workers that see it at once, only the one that inserts sends."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="firings")
    episode = models.PositiveIntegerField()
    repeat = models.PositiveIntegerField(default=0)
    fired_at = models.DateTimeField(default=timezone.now, db_index=True)
    subject = models.CharField(max_length=200)
    message = models.TextField()
    #: The figures behind it (JSON-safe: money as strings), for the webhook payload.
    facts = models.JSONField(default=dict)
    #: When the condition cleared, ending the episode (on its last firing).
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "episode", "repeat"], name="one_firing_per_episode_repeat"
            )
        ]


class AlertDelivery(models.Model):
    """Sending one firing to one recipient, retried with backoff until sent or given up."""

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed, given up"

    firing = models.ForeignKey(AlertFiring, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    target = models.CharField(max_length=500)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["firing", "channel", "target"]
        constraints = [
            models.UniqueConstraint(
                fields=["firing", "channel", "target"], name="one_delivery_per_recipient"
            )
        ]


class DigestSubscription(models.Model):
    """A user who asked for the weekly digest (to ``User.email``, never a typed-in address).
    ``week`` moves on by a conditional update before sending: of several workers, one sends."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="digest"
    )
    created_at = models.DateTimeField(default=timezone.now)
    #: The Monday (reporting time zone) starting the week whose digest was sent last.
    week = models.DateField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    def __str__(self) -> str:
        return f"Weekly digest for {self.user}"


class AlertDeliveryAttempt(models.Model):
    """One try at sending a delivery: when, and what happened (shown on the Alerts page)."""

    delivery = models.ForeignKey(AlertDelivery, on_delete=models.CASCADE, related_name="tries")
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    #: Why it failed, in words without secrets ("HTTP 500", "No answer in time").
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["at", "id"]
