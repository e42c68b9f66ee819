"""Forms for the users pages: the list filter, one user, the bulk selection and edit, the CSV upload."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.http import QueryDict

from users.models import MAX_NOTE_LENGTH, MAX_ON_HOLD_DAYS, Protocol, ResetStrategy, Status
from users.selectors import DEFAULT_ORDERING, MAX_SEARCH_LENGTH, ORDERINGS, UserFilter
from users.services import BulkEdit
from users.validation import MAX_ID, clean_bytes

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

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]  # a number, not the text
        text = super().to_python(value) or ""
        if self.max_length is not None and len(text) > self.max_length:
            raise forms.ValidationError(f"Size is longer than {self.max_length} characters.")
        try:
            return clean_bytes(text, allow_none=True)
        except ValueError as exc:
            raise forms.ValidationError(f"Size {exc}.") from None

    def run_validators(self, value: Any) -> None:
        # CharField's length validators would take len() of the number; the text was checked above.
        return None


class NoNullCharField(forms.CharField):
    def to_python(self, value: Any) -> str:
        text = super().to_python(value) or ""
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
        return UserFilter(**values)  # type: ignore[arg-type]  # each field cleaned to its UserFilter type

    def error_messages(self) -> list[str]:
        return [
            f"{self.fields[name].label or name}: {' '.join(str(error) for error in errors)}"
            for name, errors in self.errors.items()
        ]


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
    if not value:
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
    server = forms.ChoiceField(required=False, label="Server", help_text="Must serve the user's protocol.")
    note = forms.CharField(required=False, max_length=MAX_NOTE_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, servers: list[tuple[int, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", "no server"), *[(str(pk), f"{n} ({p})") for pk, n, p in servers]]
        cast(forms.ChoiceField, self.fields["server"]).choices = choices

    def values(self) -> dict[str, Any]:
        """The services' keys: the server by id."""
        values = dict(self.cleaned_data)
        server = values.pop("server", "")
        values["server_id"] = int(server) if server else None
        return values


class BulkSelectionForm(forms.Form):
    """Which users a bulk action is for: ticked rows, or every user matching the posted filter."""

    action = forms.ChoiceField()
    # The selected ids travel in ONE field ("1,2,3"), so a page of any size stays far
    # below DATA_UPLOAD_MAX_NUMBER_FIELDS; "all matching" sends the filter instead.
    ids = forms.CharField(required=False, widget=forms.HiddenInput)
    select_all = forms.BooleanField(required=False)

    MAX_IDS = 10_000

    def __init__(self, *args: Any, actions: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["action"]).choices = actions

    def clean_ids(self) -> list[int]:
        raw = self.cleaned_data["ids"].strip()
        if not raw:
            return []
        parts = raw.split(",")
        if len(parts) > self.MAX_IDS:
            raise forms.ValidationError(f"Select at most {self.MAX_IDS:,} rows, or use “all matching”.")
        try:
            ids = {int(part) for part in parts}
        except ValueError:
            raise forms.ValidationError("The selection is not a list of user ids.") from None
        if not all(1 <= pk <= MAX_ID for pk in ids):
            raise forms.ValidationError("The selection is not a list of user ids.")
        return sorted(ids)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("select_all") and not data.get("ids") and "ids" not in self.errors:
            raise forms.ValidationError("Select at least one user.")
        return data


KEEP = ""


class BulkEditForm(forms.Form):
    """NetBox's bulk edit: every field starts as "leave as it is"; what is filled is set on all.

    Shared by the list page and the admin. Nullable fields have a "clear" box (no
    server is a choice of its own). The services validate again and check what a form
    cannot: the server's protocol against every selected user.
    """

    server = forms.ChoiceField(required=False, label="Server")
    data_limit = SizeField(required=False, max_length=32, label="Data limit", help_text="e.g. 50GB")
    data_unlimited = forms.BooleanField(required=False, label="Unlimited data")
    add_data = SizeField(required=False, max_length=32, label="Or: add to the data limit", help_text="e.g. 10GB")
    expire_at = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Expires on")
    expire_never = forms.BooleanField(required=False, label="Never expires")
    add_days = forms.IntegerField(required=False, min_value=1, max_value=MAX_ON_HOLD_DAYS, label="Or: days to add")
    reset_strategy = forms.ChoiceField(
        required=False, choices=[(KEEP, "leave as it is"), *ResetStrategy.choices], label="Traffic reset"
    )
    note = forms.CharField(required=False, max_length=MAX_NOTE_LENGTH, widget=forms.Textarea(attrs={"rows": 2}))
    note_clear = forms.BooleanField(required=False, label="Clear the note")

    # Its fields travel beside the list's filter fields (which has a "server" of its own).
    prefix = "edit"

    def __init__(self, *args: Any, servers: list[tuple[int, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["server"]).choices = [
            (KEEP, "leave as it is"),
            ("none", "no server"),
            *[(str(pk), f"{name} ({protocol})") for pk, name, protocol in servers],
        ]

    def clean_add_data(self) -> int | None:
        amount = self.cleaned_data["add_data"]
        if amount == 0:
            raise forms.ValidationError("Add at least 1 byte.")
        return amount

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        pairs = (
            ("data_limit", "data_unlimited", "a data limit or unlimited"),
            ("expire_at", "expire_never", "an expiry date or never"),
            ("note", "note_clear", "a note or clear it"),
        )
        for value_name, clear_name, words in pairs:
            if data.get(value_name) not in (None, "") and data.get(clear_name):
                self.add_error(value_name, f"Choose {words}, not both.")
        if (data.get("data_limit") is not None or data.get("data_unlimited")) and data.get("add_data"):
            self.add_error("add_data", "Set a data limit or an amount to add, not both.")
        if (data.get("expire_at") or data.get("expire_never")) and data.get("add_days"):
            self.add_error("add_days", "Set an expiry date or days to add, not both.")
        if not self.errors and not self._chosen(data):
            raise forms.ValidationError("Choose at least one field to change.")
        return data

    @staticmethod
    def _chosen(data: dict[str, Any]) -> bool:
        return any(value is not None and value != "" and value is not False for value in data.values())

    def to_edit(self) -> BulkEdit:
        data = self.cleaned_data
        values: dict[str, Any] = {}
        if data["server"] != KEEP:
            values["server_id"] = None if data["server"] == "none" else int(data["server"])
        if data["data_unlimited"] or data["data_limit"] is not None:
            values["data_limit"] = None if data["data_unlimited"] else data["data_limit"]
        if data["expire_never"] or data["expire_at"]:
            values["expire_at"] = None if data["expire_never"] else data["expire_at"]
        if data["reset_strategy"] != KEEP:
            values["reset_strategy"] = data["reset_strategy"]
        if data["note_clear"] or data["note"]:
            values["note"] = "" if data["note_clear"] else data["note"]
        return BulkEdit(values=values, add_days=data["add_days"], add_bytes=data["add_data"])


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
