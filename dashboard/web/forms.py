"""Forms: every input, query strings too, is checked here; clean methods return domain types."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.conf import settings
from django.core.validators import EmailValidator, MaxValueValidator, MinValueValidator
from django.http import QueryDict

from dashboard.models import AlertRule, AuditEvent, split_lines
from dashboard.services import activity, notify, topups, usage
from dashboard.services.money import format_usd


def date_field(
    label: str, which: str, earliest: date, latest: date | None = None
) -> forms.DateField:
    """An optional date in a query string, with the browser's date picker, within bounds."""
    bounds = (
        f"between {earliest.year} and {latest.year}" if latest else f"in {earliest.year} or later"
    )
    message = f"Enter a {which} date {bounds}."
    validators: list[Any] = [MinValueValidator(earliest, message)]
    if latest is not None:
        validators.append(MaxValueValidator(latest, message))
    return forms.DateField(
        label=label,
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"invalid": f"Enter the {which} date as YYYY-MM-DD."},
        validators=validators,
    )


def optional_choice(
    label: str, choices: Any, invalid: str, empty_value: Any = None, **kwargs: Any
) -> forms.TypedChoiceField:
    """A choice a query string may leave out (``empty_value`` then), ``invalid`` if not offered."""
    return forms.TypedChoiceField(
        label=label,
        choices=choices,
        required=False,
        empty_value=empty_value,
        error_messages={"invalid_choice": invalid},
        **kwargs,
    )


class PageField(forms.IntegerField):
    """An optional page number (1 or more): 1 when it is missing."""

    default_error_messages = {
        "invalid": "The page must be a whole number.",
        "min_value": "The page must be 1 or more.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, min_value=1, **kwargs)

    def to_python(self, value: Any) -> int:
        number = super().to_python(value)
        return 1 if number is None else number


class InvoiceFilterForm(forms.Form):
    """The invoice table's query string: ``type`` (all, auto, manual; default all) and ``page``."""

    type = optional_choice(
        "Show",
        [("all", "All invoices"), ("auto", "Auto top-ups"), ("manual", "Manual top-ups")],
        "Choose all, auto or manual as the invoice type.",
        empty_value="all",
    )
    page = PageField()


class UsageFilterForm(forms.Form):
    """The usage page's query string. ``clean()`` adds ``report_range`` and ``window_asked``
    (``window`` then falls back to the range's default); ``start`` and ``end`` become local
    midnights (``end`` exclusive)."""

    window = optional_choice("Buckets", list(usage.WINDOWS.items()), "Choose day or hour buckets.")
    range = optional_choice(
        "Range",
        [*usage.PRESETS.items(), ("custom", "Custom")],
        "Choose one of the ranges offered, or custom dates.",
    )
    start = date_field("From", "start", usage.EARLIEST_DATE)
    end = date_field("To", "end", usage.EARLIEST_DATE)

    def __init__(self, *args: Any, now: datetime, zone: tzinfo, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now
        self.zone = zone
        self.today = usage.local_date(now, zone)
        for name in ("start", "end"):
            self.fields[name].widget.attrs.update(
                min=usage.EARLIEST_DATE.isoformat(), max=self.today.isoformat()
            )

    def clean_start(self) -> datetime | None:
        value = self.cleaned_data.get("start")
        return None if value is None else usage.local_midnight(value, self.zone)

    def clean_end(self) -> datetime | None:
        value = self.cleaned_data.get("end")
        if value is None:
            return None
        # A future end date means "up to now".
        return usage.local_midnight(min(value, self.today) + usage.DAY, self.zone)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        start, end = cleaned.get("start"), cleaned.get("end")
        preset: usage.Preset = cleaned.get("range") or (
            "custom" if start or end else usage.DEFAULT_PRESET
        )
        if preset == "custom":
            if start is None:
                self.add_error("start", "Enter a start date for a custom range.")
            if end is None:
                self.add_error("end", "Enter an end date for a custom range.")
            if start is None or end is None:
                return cleaned
        else:
            # A preset wins over dates left in the query string; they are dropped from links.
            cleaned["start"] = cleaned["end"] = None
        try:
            cleaned["report_range"] = usage.resolve_range(
                preset, now=self.now, zone=self.zone, start=start, end=end
            )
        except usage.RangeError as err:
            raise forms.ValidationError(str(err)) from None
        cleaned["range"] = preset
        # Links keep a window only when one was asked for; otherwise each range has its own.
        cleaned["window_asked"] = cleaned.get("window")
        cleaned["window"] = cleaned.get("window") or usage.default_window(preset)
        return cleaned


class ActivityFilterForm(forms.Form):
    """The activity table's query string, all optional. ``clean()`` adds ``filters`` (dates as
    local midnights, the end one exclusive)."""

    #: Dates outside these years cannot be an audit event, and would overflow a datetime.
    EARLIEST = date(2000, 1, 1)
    LATEST = date(2999, 12, 31)

    action = optional_choice(
        "Action",
        [("", "All actions"), *AuditEvent.Action.choices],
        "Choose one of the actions offered.",
        coerce=AuditEvent.Action,
    )
    outcome = optional_choice(
        "Outcome",
        [("", "All outcomes"), *AuditEvent.Outcome.choices],
        "Choose one of the outcomes offered.",
        coerce=AuditEvent.Outcome,
    )
    # The choices are the log's own users, set in __init__.
    user = optional_choice("Who", (), "Choose someone who appears in this log.")
    start = date_field("From", "start", EARLIEST, LATEST)
    end = date_field("To", "end", EARLIEST, LATEST)
    page = PageField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, users: Sequence[str], zone: tzinfo, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone
        user_field = cast(forms.ChoiceField, self.fields["user"])
        user_field.choices = [("", "Everyone"), *((name, name) for name in users)]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        start, end = cleaned.get("start"), cleaned.get("end")
        if start is not None and end is not None and end < start:
            self.add_error("end", "The end date is before the start date.")
            return cleaned
        cleaned["filters"] = activity.Filters(
            action=cleaned.get("action"),
            outcome=cleaned.get("outcome"),
            user=cleaned.get("user"),
            start=None if start is None else usage.local_midnight(start, self.zone),
            end=None if end is None else usage.local_midnight(end + usage.DAY, self.zone),
            start_date=start,
            end_date=end,
        )
        return cleaned


#: Dollars as people type them: digits, thousands commas ("1,000") and cents after a point;
#: ASCII only (Decimal would also read "1E+9", "Infinity" and other scripts' digits).
PLAIN_DOLLARS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
GROUPED_DOLLARS = re.compile(r"[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?")
EXPONENT = re.compile(r"[0-9.,]+[eE][-+]?[0-9]+")


class DollarField(forms.DecimalField):
    """Dollars and cents as people type them: "$1,250.5" is 1250.50. Every error a sentence
    naming ``noun``, and a refusal of the range says why its end is there ("Cloudflare's minimum").
    """

    #: Whole digits beyond these are refused before any arithmetic (Decimal's precision is 28).
    MAX_WHOLE_DIGITS = 15

    def __init__(
        self,
        *,
        noun: str,
        minimum: Decimal | None = None,
        maximum: Decimal | None = None,
        why_minimum: str = "",
        why_maximum: str = "",
        **kwargs: Any,
    ) -> None:
        messages = {
            "required": f"Enter the {noun} in dollars, such as 25 or 1,000.50.",
            "invalid": f"Enter the {noun} as a number of dollars, such as 25 or 1,000.50.",
            "exponent": f"Enter the {noun} as plain digits, such as 25 or 1,000.50, without an "
            "exponent.",
            "grouping": f"Enter the {noun} with commas only between thousands and a point "
            "before the cents, such as 1,000.50.",
            "max_decimal_places": f"Enter the {noun} in whole cents, with at most two digits "
            "after the point.",
            "too_large": f"The {noun} is far too large.",
        }
        if minimum is not None and maximum is not None:
            low, high = format_usd(minimum), format_usd(maximum)
            between = f"The {noun} must be between {low} and {high}"
            why_low = f": {low} is {why_minimum}" if why_minimum else ""
            why_high = f": {high} is {why_maximum}" if why_maximum else ""
            messages["min_value"] = f"{between}{why_low}."
            messages["max_value"] = messages["too_large"] = f"{between}{why_high}."
        super().__init__(
            min_value=minimum,
            max_value=maximum,
            decimal_places=2,
            error_messages=messages,
            # Text, not number: browsers would refuse "$20" or "1,000" and hide the reason.
            widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
            **kwargs,
        )

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and (value := value.strip()):
            value = self.read_dollars(value)
            if len(value.lstrip("-").split(".")[0]) > self.MAX_WHOLE_DIGITS:
                raise forms.ValidationError(self.error_messages["too_large"], code="too_large")
        return super().to_python(value)

    def read_dollars(self, number: str) -> str:
        """``number`` as a plain number ("-$1,000.50" is "-1000.50"), or the error coded
        ``exponent``, ``grouping`` (commas not between thousands: "1,50" is $1.50 or $150?) or
        ``invalid``."""
        # A sign before or after the dollar sign ("-$5", "$-5"): refused later as out of range.
        sign = "-" if number.startswith("-") else ""
        number = number.removeprefix("-").strip().removeprefix("$").strip()
        if not sign and number.startswith("-"):
            sign, number = "-", number.removeprefix("-").strip()
        if PLAIN_DOLLARS.fullmatch(number):
            return sign + number
        if GROUPED_DOLLARS.fullmatch(number):
            return sign + number.replace(",", "")
        code = "exponent" if EXPONENT.fullmatch(number) else "invalid"
        if code == "invalid" and re.fullmatch(r"[0-9.,]+", number):
            code = "grouping"
        raise forms.ValidationError(self.error_messages[code], code=code)

    def clean(self, value: Any) -> Decimal | None:
        result = super().clean(value)
        return None if result is None else result.quantize(Decimal("0.01"))


#: Upper bounds: a typo of a few extra zeros must not reach Cloudflare (the rule's amount is
#: bounded by ``TOPUP_MAX_AMOUNT``, as it is a top-up made again and again).
AUTO_TOPUP_MAX_THRESHOLD = Decimal("10000")
CLOUDFLARES_MINIMUM = "Cloudflare’s minimum"
SPENDING_LIMIT_MAX = Decimal("1000000")


class AutoTopupForm(forms.Form):
    """When the balance falls below ``threshold``, add ``amount``; ``preview`` says what a valid
    rule means at the 7-day burn rate (from ``preview_of``)."""

    threshold = DollarField(
        label="Threshold",
        noun="threshold",
        minimum=Decimal("5.00"),
        maximum=AUTO_TOPUP_MAX_THRESHOLD,
        why_minimum=CLOUDFLARES_MINIMUM,
    )

    def __init__(
        self,
        *args: Any,
        max_amount: Decimal | None,
        preview_of: Callable[[Decimal, Decimal], str | None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.preview_of = preview_of
        self.preview: str | None = None
        # Cloudflare's own largest top-up for the account (topup/limits), if lower.
        ceiling = settings.TOPUP_MAX_AMOUNT
        if max_amount is not None:
            ceiling = min(ceiling, max_amount)
        self.fields["amount"] = DollarField(
            label="Amount",
            noun="amount",
            minimum=Decimal("10.00"),
            maximum=ceiling,
            why_minimum=CLOUDFLARES_MINIMUM,
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        threshold, amount = cleaned.get("threshold"), cleaned.get("amount")
        if threshold is not None and amount is not None:
            self.preview = self.preview_of(threshold, amount)
        return cleaned


class SpendingLimitForm(forms.Form):
    """The account-wide limit; ``confirm`` is required only when it blocks traffic now, as
    ``impact_of(amount, duration, strategy)`` tells (kept in ``impact`` for the page)."""

    amount = DollarField(
        label="Limit",
        noun="limit",
        minimum=Decimal("1.00"),
        maximum=SPENDING_LIMIT_MAX,
        why_minimum=CLOUDFLARES_MINIMUM,
    )
    duration = forms.ChoiceField(
        label="Window",
        choices=[("daily", "Daily"), ("weekly", "Weekly"), ("monthly", "Monthly")],
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose a window: daily, weekly or monthly.",
            "invalid_choice": "Choose daily, weekly or monthly as the window.",
        },
    )
    strategy = forms.ChoiceField(
        label="How the window moves",
        choices=[("fixed", "Fixed"), ("sliding", "Sliding")],
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose fixed or sliding.",
            "invalid_choice": "Choose fixed or sliding as the strategy.",
        },
    )
    confirm = forms.BooleanField(label="I understand this stops AI traffic now", required=False)

    def __init__(self, *args: Any, impact_of: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.impact_of = impact_of
        self.impact: Any = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        amount, duration, strategy = (cleaned.get(k) for k in ("amount", "duration", "strategy"))
        if amount is None or not duration or not strategy:
            return cleaned
        self.impact = self.impact_of(amount, duration, strategy)
        if self.impact.blocks_now and not cleaned.get("confirm"):
            self.add_error(
                "confirm",
                "This limit is already used up: tick the box to confirm that it stops "
                "AI traffic now.",
            )
        return cleaned


class TopupForm(forms.Form):
    """A one-off top-up within the account's ``limits``; a quick-pick button (``preset``) stands
    in for the amount."""

    amount = DollarField(label="Amount (US dollars)", noun="amount")  # the account's, in __init__
    idempotency_key = forms.RegexField(
        regex=topups.KEY_PATTERN,
        widget=forms.HiddenInput,
        error_messages={
            "required": "This form is missing its one-time key: reload the page and try again.",
            "invalid": "This form's one-time key is not valid: reload the page and try again.",
        },
    )
    # Any text: a wrong one only leads back to the confirmation step, never to an error.
    confirmation = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(
        self, data: QueryDict | None = None, *, limits: topups.Limits, **kwargs: Any
    ) -> None:
        preset = data.get("preset", "") if data is not None else ""
        if data is not None and preset.isdigit() and Decimal(preset) in topups.QUICK_PICKS:
            data = data.copy()
            data["amount"] = preset
        super().__init__(data, **kwargs)
        whose = "this dashboard allows" if limits.ceiling else "for this account"
        self.fields["amount"] = DollarField(
            label="Amount (US dollars)",
            noun="amount",
            minimum=limits.minimum,
            maximum=limits.maximum,
            why_minimum="the smallest top-up for this account",
            why_maximum=f"the largest top-up {whose}",
        )


#: At most this many recipients of each kind per rule.
MAX_EMAILS = 20
MAX_WEBHOOKS = 10
check_email = EmailValidator("“%(value)s” is not an email address.")


class AlertRuleForm(forms.ModelForm[AlertRule]):
    """An alert rule: its kind, the one threshold that kind needs (others are stored empty),
    and its recipients, one per line (webhooks checked by ``notify.check_webhook_url``)."""

    amount = DollarField(
        label="Amount, in dollars",
        noun="amount",
        minimum=Decimal("0.01"),
        maximum=Decimal("10000000"),
        required=False,
    )

    class Meta:
        model = AlertRule
        fields = [
            "kind",
            "amount",
            "days",
            "factor",
            "emails",
            "webhooks",
            "webhook_format",
            "repeat_hours",
            "enabled",
        ]
        labels = {
            "kind": "Alert when",
            "days": "Days",
            "factor": "K (times the daily average)",
            "emails": "Email addresses, one per line",
            "webhooks": "Webhook URLs (https), one per line",
            "webhook_format": "Webhook payload",
            "repeat_hours": "While it lasts, remind every (hours; 0 for never)",
            "enabled": "On",
        }
        widgets = {
            "kind": forms.RadioSelect,
            "emails": forms.Textarea(attrs={"rows": 3, "autocomplete": "email"}),
            "webhooks": forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
            "webhook_format": forms.RadioSelect,
            "days": forms.NumberInput(attrs={"inputmode": "numeric"}),
            "factor": forms.NumberInput(attrs={"inputmode": "decimal"}),
            "repeat_hours": forms.NumberInput(attrs={"inputmode": "numeric"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["amount"].error_messages["min_value"] = "Enter an amount above $0.00."
        # A radio list needs no "select an option" row.
        kind = cast(forms.TypedChoiceField, self.fields["kind"])
        kind.choices = AlertRule.Kind.choices
        # The field refuses a negative number itself.
        repeat = MaxValueValidator(24 * 31, "Between 0 (never) and 744 hours (a month).")
        self.fields["repeat_hours"].validators.append(repeat)

    def clean_emails(self) -> str:
        return self._recipients("emails", MAX_EMAILS, "email addresses", check_email)

    def clean_webhooks(self) -> str:
        return self._recipients("webhooks", MAX_WEBHOOKS, "webhook URLs", _check_webhook)

    def _recipients(self, name: str, most: int, noun: str, check: Callable[[str], None]) -> str:
        """One per line, at most ``most``, each passing ``check``; stored without repeats."""
        values = split_lines(self.cleaned_data.get(name) or "")
        if len(values) > most:
            raise forms.ValidationError(f"At most {most} {noun}.")
        for value in values:
            check(value)
        return "\n".join(dict.fromkeys(values))

    #: The one threshold each kind needs (auto top-up failures need none).
    NEEDS: dict[str, str] = {
        AlertRule.Kind.BALANCE_BELOW: "amount",
        AlertRule.Kind.MONTH_TO_DATE_ABOVE: "amount",
        AlertRule.Kind.AUTO_TOPUP_CAP: "amount",
        AlertRule.Kind.RUNWAY_BELOW: "days",
        AlertRule.Kind.SPEND_SPIKE: "factor",
    }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        needed = self.NEEDS.get(str(data.get("kind")))
        for name in ("amount", "days", "factor"):
            if name != needed:
                data[name] = None
        if needed == "amount" and data.get("amount") is None and "amount" not in self.errors:
            self.add_error("amount", "Enter the amount in dollars, above $0.00.")
        if needed == "days" and (data.get("days") or 0) < 1:
            self.add_error("days", "Enter a number of days, at least 1.")
        if needed == "factor" and (data.get("factor") or 0) <= 1:
            self.add_error(
                "factor", "Enter K above 1: the alert is for spend above K times the daily average."
            )
        recipients = ("emails", "webhooks")
        if not any(map(data.get, recipients)) and not set(recipients) & set(self.errors):
            raise forms.ValidationError("Name at least one email address or webhook URL.")
        return data


def _check_webhook(url: str) -> None:
    try:
        notify.check_webhook_url(url)
    except notify.WebhookURLError as err:
        # Name the host only: the path of a webhook URL is its secret.
        raise forms.ValidationError(f"{notify.shown_url(url)}: {err}") from None


NO_DIGEST_ADDRESS = (
    "You have no email address on the dashboard, so no digest can be sent to you: "
    "ask a billing admin to add one to your user."
)


class DigestForm(forms.Form):
    """The weekly digest, wanted or not; ``address``: the user's own, where it would go."""

    wanted = forms.BooleanField(label="Email me a digest every Monday morning", required=False)

    def __init__(self, *args: Any, address: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address = address

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("wanted") and not self.address:
            raise forms.ValidationError(NO_DIGEST_ADDRESS)
        return data


def error_text(form: forms.BaseForm, separator: str = " ") -> str:
    """A form's error messages in one line."""
    return separator.join(str(m) for errors in form.errors.values() for m in errors)


def errors_of(form: forms.BaseForm) -> dict[str, list[str]]:
    """A form's errors as plain strings per field, for the audit log."""
    return {name: [str(message) for message in errors] for name, errors in form.errors.items()}
