"""Forms: every input, query strings too, is checked here; clean methods return domain types."""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from typing import Any, cast

from django import forms

from billing_api.models import InvoiceType, UsageWindow
from dashboard.services import usage

# ---------------------------------------------------------------- invoices


class InvoiceFilterForm(forms.Form):
    """The invoice table's query string: ``type`` (all, auto, manual) and ``page`` (1 or more).

    Both are optional; ``cleaned_data`` then holds ``"all"`` and ``1``.
    """

    type = forms.ChoiceField(
        label="Show",
        choices=[("all", "All invoices"), ("auto", "Auto top-ups"), ("manual", "Manual top-ups")],
        required=False,
        error_messages={"invalid_choice": "Choose all, auto or manual as the invoice type."},
    )
    page = forms.IntegerField(
        required=False,
        min_value=1,
        error_messages={
            "invalid": "The page must be a whole number.",
            "min_value": "The page must be 1 or more.",
        },
    )

    def clean_type(self) -> InvoiceType:
        value = self.cleaned_data.get("type") or "all"
        return cast(InvoiceType, value)

    def clean_page(self) -> int:
        value = self.cleaned_data.get("page")
        return 1 if value is None else int(value)


# ---------------------------------------------------------------- usage


class UsageFilterForm(forms.Form):
    """The usage page's query string: ``window``, ``range`` and, for a custom range, dates.

    All optional. ``clean()`` leaves ``cleaned_data["window"]`` (a window literal: the one
    asked for, kept in ``window_asked``, or the range's default) and ``report_range`` (a
    :class:`usage.ReportRange`). ``start`` and ``end`` clean to aware datetimes: the local
    midnight that starts the start date, and the one that ends the end date (exclusive).
    """

    window = forms.ChoiceField(
        label="Buckets",
        choices=list(usage.WINDOWS.items()),
        required=False,
        error_messages={"invalid_choice": "Choose day or hour buckets."},
    )
    range = forms.ChoiceField(
        label="Range",
        choices=[*usage.PRESETS.items(), ("custom", "Custom")],
        required=False,
        error_messages={"invalid_choice": "Choose one of the ranges offered, or custom dates."},
    )
    start = forms.DateField(
        label="From",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"invalid": "Enter the start date as YYYY-MM-DD."},
    )
    end = forms.DateField(
        label="To",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"invalid": "Enter the end date as YYYY-MM-DD."},
    )

    def __init__(self, *args: Any, now: datetime, zone: tzinfo, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.now = now
        self.zone = zone
        self.today = usage.local_date(now, zone)
        for name in ("start", "end"):
            self.fields[name].widget.attrs.update(
                min=usage.EARLIEST_DATE.isoformat(), max=self.today.isoformat()
            )

    def clean_window(self) -> UsageWindow | None:
        value = self.cleaned_data.get("window")
        return cast(UsageWindow, value) if value else None

    def clean_range(self) -> usage.Preset | None:
        value = self.cleaned_data.get("range")
        return cast(usage.Preset, value) if value else None

    def _check_date(self, value: date | None, which: str) -> date | None:
        if value is not None and value < usage.EARLIEST_DATE:
            raise forms.ValidationError(
                f"Enter a {which} date in {usage.EARLIEST_DATE.year} or later."
            )
        return value

    def clean_start(self) -> datetime | None:
        value = self._check_date(self.cleaned_data.get("start"), "start")
        return None if value is None else usage.local_midnight(value, self.zone)

    def clean_end(self) -> datetime | None:
        value = self._check_date(self.cleaned_data.get("end"), "end")
        if value is None:
            return None
        # A future end date means "up to now"; the range is cut at now when resolved.
        value = min(value, self.today)
        return usage.local_midnight(value + usage.DAY, self.zone)

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
