"""Forms for the users pages: the list filter, one user, the bulk action, the CSV upload."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict

from users.models import MAX_NOTE_LENGTH, MAX_ON_HOLD_DAYS, Protocol, ResetStrategy, Status
from users.selectors import DEFAULT_ORDERING, MAX_SEARCH_LENGTH, ORDERINGS, UserFilter
from users.validation import clean_bytes

FILTER_FIELDS = (
    "q",
    "username",
    "email",
    "status",
    "protocol",
    "server",
    "created_from",
    "created_to",
    "expires_from",
    "expires_to",
    "used_min",
    "used_max",
)


class SizeField(forms.CharField):
    """Bytes, typed as '10GB', '1.5 GiB' or a plain number of bytes."""

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().to_python(value)
        try:
            return clean_bytes(text, allow_none=True)
        except ValueError as exc:
            raise forms.ValidationError(f"Size {exc}.") from None


class NoNullCharField(forms.CharField):
    def to_python(self, value: Any) -> str:  # type: ignore[override]
        text = super().to_python(value)
        if "\x00" in text:
            raise forms.ValidationError("Contains a null byte.")
        return text


class UserFilterForm(forms.Form):
    q = NoNullCharField(required=False, max_length=MAX_SEARCH_LENGTH, label="Search")
    username = NoNullCharField(required=False, max_length=64, help_text="* matches anything")
    email = NoNullCharField(required=False, max_length=254, help_text="* matches anything")
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *Status.choices])
    protocol = forms.ChoiceField(required=False, choices=[("", "any protocol"), *Protocol.choices])
    server = forms.CharField(required=False, max_length=20)
    created_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    expires_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    expires_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    used_min = SizeField(required=False, max_length=32, label="Traffic from")
    used_max = SizeField(required=False, max_length=32, label="Traffic to")

    def clean_server(self) -> str:
        value = self.cleaned_data["server"].strip()
        if value and value != "none" and not value.isdigit():
            raise forms.ValidationError("Server must be a server id or 'none'.")
        return value

    def to_filter(self) -> UserFilter:
        """The valid part of the filter; invalid fields are left out (their errors are shown)."""
        data = {name: value for name, value in self.cleaned_data.items() if name not in self.errors}
        values = {name: data.get(name) for name in FILTER_FIELDS if data.get(name) not in (None, "")}
        return UserFilter(**values)

    def error_messages(self) -> list[str]:
        return [f"{self.fields[name].label or name}: {' '.join(errors)}" for name, errors in self.errors.items()]


def parse_filter(data: QueryDict) -> tuple[UserFilter, list[str]]:
    form = UserFilterForm(data)
    form.is_valid()
    return form.to_filter(), form.error_messages()


def parse_ordering(value: str | None) -> tuple[str, str | None]:
    if not value:
        return DEFAULT_ORDERING, None
    if value not in ORDERINGS:
        return DEFAULT_ORDERING, "Unknown ordering; showing newest first."
    return value, None


def parse_page(value: str | None) -> tuple[int | None, str | None]:
    if value in (None, ""):
        return None, None
    try:
        number = int(value)
    except ValueError:
        return None, "The page number must be a whole number; showing page 1."
    if number < 1:
        return None, "Page numbers start at 1; showing page 1."
    return number, None


class UserForm(forms.Form):
    """One user; values go to the same services as every batch (they validate again)."""

    username = forms.CharField(max_length=32, help_text="3-32 of a-z 0-9 _ . - (stored lower-case)")
    email = forms.EmailField(required=False)
    protocol = forms.ChoiceField(choices=Protocol.choices)
    data_limit = forms.CharField(required=False, max_length=32, help_text="e.g. 50GB; empty for unlimited")
    reset_strategy = forms.ChoiceField(choices=ResetStrategy.choices, initial=ResetStrategy.NONE)
    expire_at = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Expires on")
    on_hold_days = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_ON_HOLD_DAYS, label="Or: days from first use"
    )
    is_active = forms.BooleanField(required=False, initial=True, label="Enabled")
    note = forms.CharField(required=False, max_length=MAX_NOTE_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))

    def values(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


BULK_ACTIONS = {
    "activate": "Enable",
    "disable": "Disable",
    "extend": "Extend expiry",
    "add_data": "Add data",
    "reset": "Reset traffic",
    "delete": "Delete",
}


class BulkActionForm(forms.Form):
    action = forms.ChoiceField(choices=list(BULK_ACTIONS.items()))
    # The selected ids travel in ONE field ("1,2,3"), so a page of any size stays far
    # below DATA_UPLOAD_MAX_NUMBER_FIELDS; "all matching" sends the filter instead.
    ids = forms.CharField(required=False, widget=forms.HiddenInput)
    select_all = forms.BooleanField(required=False)
    days = forms.IntegerField(required=False, min_value=1, max_value=MAX_ON_HOLD_DAYS)
    amount = SizeField(required=False, max_length=32)
    confirmed = forms.BooleanField(required=False)

    MAX_IDS = 10_000

    def clean_ids(self) -> list[int]:
        raw = self.cleaned_data["ids"].strip()
        if not raw:
            return []
        parts = raw.split(",")
        if len(parts) > self.MAX_IDS:
            raise forms.ValidationError(f"Select at most {self.MAX_IDS:,} rows, or use “all matching”.")
        try:
            return sorted({int(part) for part in parts})
        except ValueError:
            raise forms.ValidationError("The selection is not a list of user ids.") from None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        action = data.get("action")
        if not data.get("select_all") and not data.get("ids") and "ids" not in self.errors:
            raise forms.ValidationError("Select at least one user.")
        if action == "extend" and not data.get("days"):
            self.add_error("days", "Say how many days to extend by (1-3650).")
        if action == "add_data" and not data.get("amount"):
            self.add_error("amount", "Say how much data to add, e.g. 10GB.")
        return data


class ImportForm(forms.Form):
    file = forms.FileField(label="CSV file")
    write_good_rows = forms.BooleanField(
        required=False, label="Write the good rows even if some are bad (default: nothing unless all are good)"
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        limit = settings.USERS_IMPORT_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {upload.size / 1e6:.1f} MB; the page takes up to {limit / 1e6:.1f} MB. "
                "Split it, or use `manage.py importusers FILE` on the server."
            )
        return upload
