"""Writes on VPN users. Every function takes any number of users in one call.

Batch create and per-row update go through PostgreSQL COPY (into the table, or into a
temporary table joined by one `UPDATE … FROM`); the set operations are one statement
over a queryset (a primary-key set or "everything matching this filter"). Each write
runs in one transaction, records one audit entry inside it, and invalidates the cache
tags it touched once, after commit. On SQLite (the zero-config run) the same functions
fall back to `bulk_create` / `executemany` in one transaction.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Case, F, PositiveIntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from perf.cache import invalidate_on_commit
from users.credentials import CREDENTIAL_COLUMNS, generate_credentials, sealed_credentials
from users.models import MAX_BYTES, MAX_ON_HOLD_DAYS, VpnUser
from users.validation import CLEANERS
from vpnadmin.audit import audit_record
from vpnadmin.models import MAX_AUDITED_IDS

TARGET = "users.VpnUser"
COPY_CHUNK = 5_000
CREATE_FIELDS = (
    "username",
    "email",
    "protocol",
    "data_limit",
    "used_traffic",
    "reset_strategy",
    "expire_at",
    "on_hold_days",
    "is_active",
    "note",
)
REQUIRED_FIELDS = ("username", "protocol")
# Fields a batch update may set; the username is the account's identity and stays.
UPDATE_FIELDS = (
    "email",
    "protocol",
    "data_limit",
    "used_traffic",
    "reset_strategy",
    "expire_at",
    "on_hold_days",
    "is_active",
    "note",
    "last_online_at",
)
# Encrypted by sealed_credentials before a row leaves Python: COPY never carries a plaintext secret.
_CREDENTIAL_COLUMNS = CREDENTIAL_COLUMNS
_SQL_TYPES = {
    "email": "text",
    "protocol": "text",
    "data_limit": "bigint",
    "used_traffic": "bigint",
    "reset_strategy": "text",
    "expire_at": "timestamptz",
    "on_hold_days": "integer",
    "is_active": "boolean",
    "note": "text",
    "last_online_at": "timestamptz",
    "server_id": "bigint",
    "credential_uuid": "text",  # a Fernet token (vpnadmin.crypto)
    "credential_uuid_index": "text",
    "credential_password": "text",
    "wg_private_key": "text",
    "wg_public_key": "text",
}


@dataclass(frozen=True)
class RowError:
    """One bad row: `position` is the caller's numbering (1-based, or the CSV line)."""

    position: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.position}" if self.position else "batch"
        return f"{where}: {self.field} {self.message}"


@dataclass
class BatchResult:
    written: int = 0
    ids: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rows_seen: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _tags_for(ids: Sequence[int]) -> list[str]:
    tags = ["users", "stats"]
    if len(ids) <= 100:
        tags += [f"user:{pk}" for pk in ids]
    return tags


# --- create -------------------------------------------------------------------------


def validate_new_users(
    rows: Sequence[Mapping[str, Any]], *, positions: Sequence[int] | None = None
) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """Clean every row and check usernames against each other and the database.

    Returns the clean rows (with their positions) and every error found; a row with
    any error is left out of the clean list.
    """
    positions = list(positions) if positions is not None else list(range(1, len(rows) + 1))
    errors: list[RowError] = []
    clean: list[tuple[int, dict[str, Any]]] = []
    first_seen: dict[str, int] = {}
    for position, raw in zip(positions, rows, strict=True):
        row_errors: list[RowError] = []
        unknown = sorted(set(raw) - set(CREATE_FIELDS))
        if unknown:
            row_errors.append(RowError(position, "columns", f"unknown: {', '.join(unknown)}"))
        values: dict[str, Any] = {}
        for name in CREATE_FIELDS:
            if name not in raw and name in REQUIRED_FIELDS:
                row_errors.append(RowError(position, name, "is required"))
                continue
            try:
                values[name] = CLEANERS[name](raw.get(name))
            except ValueError as exc:
                row_errors.append(RowError(position, name, str(exc)))
        if values.get("expire_at") and values.get("on_hold_days"):
            row_errors.append(RowError(position, "expire_at", "and on_hold_days cannot both be set"))
        username = values.get("username")
        if username:
            if username in first_seen:
                row_errors.append(RowError(position, "username", f"{username!r} repeats row {first_seen[username]}"))
            else:
                first_seen[username] = position
        if row_errors:
            errors.extend(row_errors)
        else:
            clean.append((position, values))
    taken = _existing_usernames([values["username"] for _, values in clean])
    if taken:
        still_clean = []
        for position, values in clean:
            if values["username"] in taken:
                errors.append(RowError(position, "username", f"{values['username']!r} already exists"))
            else:
                still_clean.append((position, values))
        clean = still_clean
    errors.sort(key=lambda error: error.position)
    return clean, errors


def _existing_usernames(usernames: Sequence[str]) -> set[str]:
    if _is_postgres():
        # One array parameter: planning a 10,000-item IN list costs more than the lookups.
        with connection.cursor() as cursor:
            cursor.execute("SELECT username FROM users_vpnuser WHERE username = ANY(%s)", [list(usernames)])
            return {row[0] for row in cursor.fetchall()}
    taken: set[str] = set()
    for start in range(0, len(usernames), 10_000):
        chunk = usernames[start : start + 10_000]
        taken.update(VpnUser.objects.filter(username__in=chunk).values_list("username", flat=True))
    return taken


def users_create_batch(
    *,
    actor: Any | None,
    rows: Sequence[Mapping[str, Any]],
    positions: Sequence[int] | None = None,
    write_good_rows: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BatchResult:
    """Validate every row, then insert all of them in one transaction (COPY on PostgreSQL).

    With any bad row nothing is written, unless `write_good_rows` asks to write the
    rest. Every bad row is reported with its position and reason.
    """
    clean, errors = validate_new_users(rows, positions=positions)
    result = BatchResult(errors=errors, rows_seen=len(rows))
    if (errors and not write_good_rows) or not clean:
        return result
    now = timezone.now()
    try:
        with transaction.atomic():
            ids = _insert(clean, now=now, progress=progress)
            audit_record(
                actor=actor,
                action="users_create_batch",
                target=TARGET,
                count=len(ids),
                object_ids=ids,
                detail={"skipped_bad_rows": len({e.position for e in errors})},
            )
            invalidate_on_commit(_tags_for(ids))
    except IntegrityError:
        # Another write took one of these usernames between the check and the insert.
        result.errors.append(RowError(0, "username", "was taken by another write meanwhile; nothing was written"))
        return result
    result.written = len(ids)
    result.ids = ids
    return result


def _insert(clean: list[tuple[int, dict[str, Any]]], *, now: datetime.datetime, progress: Any) -> list[int]:
    if not _is_postgres():
        objects = []
        for _, values in clean:
            objects.append(
                VpnUser(**values, **generate_credentials(values["protocol"])._asdict(), created_at=now, updated_at=now)
            )
        created = VpnUser.objects.bulk_create(objects, batch_size=500)
        return [obj.pk for obj in created]
    columns = ["id", *CREATE_FIELDS, *_CREDENTIAL_COLUMNS, "created_at", "updated_at"]
    with connection.cursor() as cursor:
        # Keys first, so the audit entry and the caller know them without a read-back.
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('users_vpnuser', 'id')) FROM generate_series(1, %s)", [len(clean)]
        )
        ids = sorted(row[0] for row in cursor.fetchall())
        raw = cursor.connection
        sql = f"COPY users_vpnuser ({', '.join(columns)}) FROM STDIN"
        written = 0
        with raw.cursor() as copy_cursor:
            for start in range(0, len(clean), COPY_CHUNK):
                chunk = clean[start : start + COPY_CHUNK]
                with copy_cursor.copy(sql) as copy:
                    for pk, (_, values) in zip(ids[start : start + COPY_CHUNK], chunk, strict=True):
                        copy.write_row(
                            (
                                pk,
                                *[values[name] for name in CREATE_FIELDS],
                                *sealed_credentials(values["protocol"]),
                                now,
                                now,
                            )
                        )
                written += len(chunk)
                if progress:
                    progress(f"wrote {written:,} of {len(clean):,} users")
    return ids


# --- per-row update -----------------------------------------------------------------


def users_update_batch(
    *,
    actor: Any | None,
    changes: Mapping[int, Mapping[str, Any]],
    action: str = "users_update_batch",
) -> BatchResult:
    """Give each user its own values (traffic sync, edits): one set-based UPDATE per field set.

    A change of protocol gets new credentials for that protocol. With any bad value
    nothing is written. Ids that do not exist are skipped and reported as not written.
    """
    result = BatchResult(rows_seen=len(changes))
    groups: dict[tuple[str, ...], list[tuple[int, list[Any]]]] = {}
    allowed = {*UPDATE_FIELDS, "server_id"}
    for position, (pk, raw) in enumerate(changes.items(), start=1):
        unknown = sorted(set(raw) - allowed)
        if unknown:
            result.errors.append(RowError(position, "columns", f"cannot be changed here: {', '.join(unknown)}"))
            continue
        names = tuple(sorted(raw))
        values: list[Any] = []
        bad = False
        for name in names:
            try:
                values.append(CLEANERS[name](raw[name]))
            except ValueError as exc:
                result.errors.append(RowError(position, name, str(exc)))
                bad = True
        if bad or not names:
            continue
        if "protocol" in names:
            names_with_credentials = (*names, *_CREDENTIAL_COLUMNS)
            values += list(sealed_credentials(values[names.index("protocol")]))
            groups.setdefault(names_with_credentials, []).append((int(pk), values))
        else:
            groups.setdefault(names, []).append((int(pk), values))
    if result.errors:
        return result
    now = timezone.now()
    ids = [pk for rows in groups.values() for pk, _ in rows]
    with transaction.atomic():
        server_tags = _server_tags_for_moves(groups)
        updated = 0
        for index, (names, rows) in enumerate(groups.items()):
            updated += _update_rows(names, rows, now=now, table_suffix=index)
        audit_record(
            actor=actor,
            action=action,
            target=TARGET,
            count=updated,
            object_ids=ids,
            detail={"fields": sorted({n for names in groups for n in names if n not in _CREDENTIAL_COLUMNS})},
        )
        invalidate_on_commit([*_tags_for(ids), *server_tags])
    result.written = updated
    result.ids = ids
    return result


def _server_tags_for_moves(groups: Mapping[tuple[str, ...], list[tuple[int, list[Any]]]]) -> list[str]:
    """Users moving between servers touch both servers' pages: the old and the new one."""
    servers: set[int] = set()
    moved: list[int] = []
    for names, rows in groups.items():
        if "server_id" in names:
            position = names.index("server_id")
            servers.update(values[position] for _, values in rows if values[position])
            moved.extend(pk for pk, _ in rows)
    if moved:
        old = VpnUser.objects.filter(pk__in=moved).exclude(server_id=None).values_list("server_id", flat=True)
        servers.update(old.distinct())
    return [f"server:{pk}" for pk in sorted(servers)]


def _update_rows(
    names: tuple[str, ...], rows: list[tuple[int, list[Any]]], *, now: datetime.datetime, table_suffix: int
) -> int:
    if not _is_postgres():
        assignments = ", ".join(f"{name} = %s" for name in names)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE users_vpnuser SET {assignments}, updated_at = %s WHERE id = %s",  # noqa: S608 - names are a whitelist
                [(*values, now, pk) for pk, values in rows],
            )
            return cursor.rowcount
    table = f"_vpnuser_changes_{table_suffix}"
    column_defs = ", ".join(f"{name} {_SQL_TYPES[name]}" for name in names)
    assignments = ", ".join(f"{name} = c.{name}" for name in names)
    updated = 0
    with connection.cursor() as cursor:
        # An outer transaction may already hold one from an earlier call.
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(f"CREATE TEMP TABLE {table} (id bigint, {column_defs}) ON COMMIT DROP")
        raw = cursor.connection
        for start in range(0, len(rows), 50_000):
            chunk = rows[start : start + 50_000]
            with (
                raw.cursor() as copy_cursor,
                copy_cursor.copy(f"COPY {table} (id, {', '.join(names)}) FROM STDIN") as copy,
            ):
                for pk, values in chunk:
                    copy.write_row((pk, *values))
            cursor.execute(
                f"UPDATE users_vpnuser AS u SET {assignments}, updated_at = %s FROM {table} AS c WHERE u.id = c.id",  # noqa: S608
                [now],
            )
            updated += cursor.rowcount
            if start + 50_000 < len(rows):
                cursor.execute(f"TRUNCATE {table}")
    return updated


def users_record_traffic(*, actor: Any | None, usage: Mapping[int, int]) -> BatchResult:
    """Add each user's new traffic (bytes since the last sync) in one statement.

    Users who used anything are marked online now; an on-hold user's expiry starts on
    this first use (now + its on-hold days). A negative or absurd amount writes nothing.
    """
    result = BatchResult(rows_seen=len(usage))
    for position, (pk, amount) in enumerate(usage.items(), start=1):
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_BYTES:
            result.errors.append(RowError(position, "used_traffic", f"of user {pk} must be 0 to 1 PiB bytes"))
    rows = [(int(pk), amount) for pk, amount in usage.items() if amount > 0]
    if result.errors or not rows:
        return result
    now = timezone.now()
    with transaction.atomic():
        if _is_postgres():
            with connection.cursor() as cursor:
                cursor.execute("DROP TABLE IF EXISTS _vpnuser_traffic")
                cursor.execute("CREATE TEMP TABLE _vpnuser_traffic (id bigint, amount bigint) ON COMMIT DROP")
                with (
                    cursor.connection.cursor() as raw,
                    raw.copy("COPY _vpnuser_traffic (id, amount) FROM STDIN") as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
                cursor.execute(
                    """
                    UPDATE users_vpnuser AS u SET
                        used_traffic = LEAST(u.used_traffic + t.amount, %s),
                        last_online_at = %s,
                        expire_at = CASE WHEN u.expire_at IS NULL AND u.on_hold_days IS NOT NULL
                            THEN %s + make_interval(days => u.on_hold_days) ELSE u.expire_at END,
                        updated_at = %s
                    FROM _vpnuser_traffic AS t WHERE u.id = t.id
                    """,
                    [MAX_BYTES, now, now, now],
                )
                written = cursor.rowcount
        else:
            amounts = dict(rows)
            holds = dict(
                VpnUser.objects.filter(pk__in=amounts, expire_at=None, on_hold_days__isnull=False).values_list(
                    "pk", "on_hold_days"
                )
            )
            written = 0
            for user in VpnUser.objects.filter(pk__in=amounts).only("pk", "used_traffic"):
                written += VpnUser.objects.filter(pk=user.pk).update(
                    used_traffic=min(user.used_traffic + amounts[user.pk], MAX_BYTES),
                    last_online_at=now,
                    updated_at=now,
                    **({"expire_at": now + datetime.timedelta(days=holds[user.pk])} if user.pk in holds else {}),
                )
        ids = [pk for pk, _ in rows]
        audit_record(actor=actor, action="users_record_traffic", target=TARGET, count=written, object_ids=ids)
        invalidate_on_commit(_tags_for(ids))
    result.written = written
    result.ids = [pk for pk, _ in rows]
    return result


# --- set operations over a selection --------------------------------------------------


def _audited_ids(users: QuerySet[VpnUser]) -> list[int]:
    return list(users.order_by().values_list("pk", flat=True)[:MAX_AUDITED_IDS])


def _set_operation(
    *,
    actor: Any | None,
    users: QuerySet[VpnUser],
    action: str,
    detail: dict[str, Any],
    write: Callable[[QuerySet[VpnUser]], int],
) -> int:
    with transaction.atomic():
        ids = _audited_ids(users)
        if not ids:
            return 0
        # Pages about a server (its user count) read the server's tag.
        scope = VpnUser.objects.filter(pk__in=ids) if len(ids) < MAX_AUDITED_IDS else users
        server_ids = set(scope.order_by().exclude(server_id=None).values_list("server_id", flat=True).distinct())
        count = write(users.order_by())
        audit_record(actor=actor, action=action, target=TARGET, count=count, object_ids=ids, detail=detail)
        tags = _tags_for(ids) if len(ids) < MAX_AUDITED_IDS else ["users", "stats"]
        invalidate_on_commit([*tags, *(f"server:{pk}" for pk in server_ids)])
    return count


def users_set_active(*, actor: Any | None, users: QuerySet[VpnUser], active: bool, selection: str = "") -> int:
    """Enable or disable every user in `users`; returns how many changed."""
    now = timezone.now()
    return _set_operation(
        actor=actor,
        users=users.filter(is_active=not active),
        action="users_activate" if active else "users_disable",
        detail={"selection": selection},
        write=lambda qs: qs.update(is_active=active, updated_at=now),
    )


def users_extend_expiry(*, actor: Any | None, users: QuerySet[VpnUser], days: int, selection: str = "") -> int:
    """Push expiry `days` later (from now if already past); on-hold users get a longer hold.

    Users without any expiry keep none: they are not counted.
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_ON_HOLD_DAYS:
        raise ValueError(f"days must be a whole number from 1 to {MAX_ON_HOLD_DAYS}")
    now = timezone.now()
    extra = datetime.timedelta(days=days)

    def write(qs: QuerySet[VpnUser]) -> int:
        return qs.update(
            expire_at=Case(
                When(expire_at__isnull=False, then=Greatest(F("expire_at"), Value(now)) + extra),
                default=F("expire_at"),
            ),
            on_hold_days=Case(
                When(
                    expire_at__isnull=True,
                    on_hold_days__isnull=False,
                    then=Least(F("on_hold_days") + days, Value(MAX_ON_HOLD_DAYS), output_field=PositiveIntegerField()),
                ),
                default=F("on_hold_days"),
            ),
            updated_at=now,
        )

    return _set_operation(
        actor=actor,
        users=users.filter(Q(expire_at__isnull=False) | Q(on_hold_days__isnull=False)),
        action="users_extend_expiry",
        detail={"selection": selection, "days": days},
        write=write,
    )


def users_add_data(*, actor: Any | None, users: QuerySet[VpnUser], amount: int, selection: str = "") -> int:
    """Raise the data limit by `amount` bytes; unlimited users stay unlimited and are not counted."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_BYTES:
        raise ValueError("the amount must be between 1 byte and 1 PiB")
    now = timezone.now()
    return _set_operation(
        actor=actor,
        users=users.filter(data_limit__isnull=False),
        action="users_add_data",
        detail={"selection": selection, "bytes": amount},
        write=lambda qs: qs.update(
            data_limit=Least(F("data_limit") + amount, Value(MAX_BYTES), output_field=BigIntegerField()), updated_at=now
        ),
    )


def users_reset_traffic(*, actor: Any | None, users: QuerySet[VpnUser], selection: str = "") -> int:
    """Set used traffic to zero; returns how many users had any."""
    now = timezone.now()
    return _set_operation(
        actor=actor,
        users=users.filter(used_traffic__gt=0),
        action="users_reset_traffic",
        detail={"selection": selection},
        write=lambda qs: qs.update(used_traffic=0, updated_at=now),
    )


def users_delete(*, actor: Any | None, users: QuerySet[VpnUser], selection: str = "") -> int:
    """Delete every user in `users` with one DELETE; returns how many."""

    def write(qs: QuerySet[VpnUser]) -> int:
        # Nothing references a VPN user and no signal listens, so this is one
        # DELETE … WHERE (Django's fast delete), never a per-row collector.
        deleted, _ = qs.delete()
        return deleted

    return _set_operation(actor=actor, users=users, action="users_delete", detail={"selection": selection}, write=write)
