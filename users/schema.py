"""Which VpnUser fields each part of the product reads and writes: one table, every list derived.

Before this table the same names were spelled out six times (create columns, update
columns, their SQL types, export columns, list columns, the admin form) and drifted:
adding the server column meant finding every copy. Now a field is added here once, with
the roles it plays; the types come from the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.db import connection

from users.models import VpnUser


@dataclass(frozen=True)
class UserField:
    """One field and the roles it plays. `name` is the model field (or a computed value)."""

    name: str
    create: bool = False  # a new user's row may give it (services, the CSV import, the forms)
    required: bool = False  # ... and must
    update: bool = False  # users_update_batch may give a user its own value
    export: bool = False  # a column of the CSV export
    listed: bool = False  # read for a row of the list page
    computed: bool = False  # not a column: computed in SQL by the selectors (the status)
    # How the export and the list read it when that differs from the column (a name, not an id).
    read_as: str = ""

    @property
    def column(self) -> str:
        """The database column and the key services take: `server_id` for the server."""
        if self.computed:
            return self.name
        column = getattr(VpnUser._meta.get_field(self.name), "column", None)
        if not column:
            raise ValueError(f"VpnUser.{self.name} has no column")
        return str(column)

    @property
    def read(self) -> str:
        return self.read_as or self.column


# The order is the order of the export's columns and of the admin form.
FIELDS: tuple[UserField, ...] = (
    UserField("id", listed=True),
    UserField("username", create=True, required=True, export=True, listed=True),
    UserField("email", create=True, update=True, export=True, listed=True),
    UserField("protocol", create=True, required=True, update=True, export=True, listed=True),
    UserField("status", export=True, listed=True, computed=True),
    UserField("is_active", create=True, update=True, export=True, listed=True),
    UserField("data_limit", create=True, update=True, export=True, listed=True),
    UserField("used_traffic", create=True, update=True, export=True, listed=True),
    UserField("reset_strategy", create=True, update=True, export=True),
    UserField("expire_at", create=True, update=True, export=True, listed=True),
    UserField("on_hold_days", create=True, update=True, export=True, listed=True),
    # A server is named in CSV and shown by name; services take its id.
    UserField("server", create=True, update=True, export=True, listed=True, read_as="server__name"),
    UserField("note", create=True, update=True, export=True),
    UserField("created_at", export=True),
    UserField("last_online_at", update=True, export=True, listed=True),
)

# Keys a new user's row may carry (services), in COPY order.
CREATE_FIELDS: tuple[str, ...] = tuple(f.column for f in FIELDS if f.create)
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.column for f in FIELDS if f.required)
# Keys a per-user update may carry; the username is the account's identity and stays.
UPDATE_FIELDS: tuple[str, ...] = tuple(f.column for f in FIELDS if f.update)
# Model field names of the admin form: what an operator types for one user.
FORM_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.create)
# CSV: the header an export writes, what it reads for it, and what an import accepts.
EXPORT_COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.export)
EXPORT_READS: tuple[str, ...] = tuple(f.read for f in FIELDS if f.export)
IMPORT_COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.create)
REQUIRED_IMPORT_COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
# Exported columns an import accepts and ignores (computed or kept by the app), so an
# export re-imports as it is.
IGNORED_ON_IMPORT: frozenset[str] = frozenset({"id"} | {f.name for f in FIELDS if f.export and not f.create})
# What the list page reads for a row (the status is annotated by the selector).
LIST_READS: tuple[str, ...] = tuple(f.read for f in FIELDS if f.listed and not f.computed)


@cache
def sql_type(column: str) -> str:
    """The column's PostgreSQL type, from the model (for the temporary tables of COPY updates)."""
    for model_field in VpnUser._meta.concrete_fields:
        if model_field.column == column:
            db_type = model_field.db_type(connection)
            if db_type is None:
                raise ValueError(f"{column} has no database type")
            return db_type
    raise ValueError(f"VpnUser has no column {column!r}")
