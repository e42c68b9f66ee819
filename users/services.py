"""Writes on VPN users. Every function takes any number of users in one call.

Batch create and per-row update go through PostgreSQL COPY (into the table, or into a
temporary table joined by one `UPDATE … FROM`); the set operations and the bulk edit
are one statement over a queryset (a primary-key set or "everything matching this
filter"). Each write runs in one transaction, records one audit entry inside it and
ends in `_after_commit`: the cache tags it touched are dropped and the servers serving
the users it touched (before and after a move) are marked dirty, once, after commit.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from django.db import IntegrityError, connection, transaction
from django.db.models import (
    CASCADE,
    DO_NOTHING,
    PROTECT,
    RESTRICT,
    SET_NULL,
    BigIntegerField,
    Case,
    F,
    Model,
    PositiveIntegerField,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from containers.models import VpnServer
from containers.services import servers_mark_dirty
from perf.cache import invalidate_on_commit
from users.credentials import CREDENTIAL_COLUMNS, sealed_credentials
from users.models import MAX_BYTES, MAX_ON_HOLD_DAYS, VpnUser
from users.schema import CREATE_FIELDS, REQUIRED_FIELDS, UPDATE_FIELDS, sql_type
from users.selectors import selection_stamp
from users.validation import CLEANERS
from vpnadmin.audit import audit_record
from vpnadmin.models import MAX_AUDITED_IDS

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TARGET = "users.VpnUser"
COPY_CHUNK = 5_000
# A batch this large appends to the GIN indexes' pending lists (trigram and full-text
# search) instead of merging them mid-COPY: merging roughly doubled a 10,000-row create
# (bench/users/indexes.py). The merge then runs in a queue worker right after the commit
# (users.clean_search_indexes), so no later single-row write inherits it in a request.
LARGE_BATCH = 1_000
LARGE_BATCH_GIN_PENDING_LIST = "64MB"
# Encrypted by sealed_credentials before a row leaves Python: COPY never carries a plaintext secret.
_CREDENTIAL_COLUMNS = CREDENTIAL_COLUMNS
# Allocated per server by the data plane (a WireGuard address in the server's subnet, a
# Shadowsocks port); a user who changes server or protocol gets fresh ones over there,
# and keeping the old ones could collide with another user's on the new server.
_ALLOCATION_COLUMNS = ("wg_address", "ss_port")
# The fields a bulk edit may set to one value on every selected user.
BULK_EDIT_FIELDS = ("server_id", "data_limit", "expire_at", "reset_strategy", "note")


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


class BulkRefused(ValueError):
    """A write over a selection refused as a whole: nothing was written; the message says why."""


class SelectionChanged(BulkRefused):
    """The users an operator confirmed are no longer the users the selection holds."""


# --- what every write leaves behind ---------------------------------------------------


def _after_commit(*, user_ids: Sequence[int], server_ids: Iterable[int | None]) -> None:
    """Call inside the write's transaction. After it commits: drop the cache entries that
    read these users or servers, and mark the servers dirty so one apply per server
    brings its users in line (the old and the new server of a move alike)."""
    servers = sorted({int(pk) for pk in server_ids if pk})
    tags = ["users", "stats", *(f"server:{pk}" for pk in servers)]
    if len(user_ids) <= 100:
        tags += [f"user:{pk}" for pk in user_ids]
    invalidate_on_commit(tags)
    servers_mark_dirty(server_ids=servers)


def _servers_of_ids(ids: Sequence[int]) -> set[int]:
    """The servers serving these users now; read before a write moves or deletes them."""
    with connection.cursor() as cursor:
        # One array parameter: planning a 10,000-item IN list costs more than the lookups.
        cursor.execute(
            "SELECT DISTINCT server_id FROM users_vpnuser WHERE id = ANY(%s) AND server_id IS NOT NULL", [list(ids)]
        )
        return {row[0] for row in cursor.fetchall()}


def _servers_of(users: QuerySet[VpnUser]) -> set[int]:
    return set(users.order_by().exclude(server_id=None).values_list("server_id", flat=True).distinct())


def _server_protocols(server_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """{id: (name, protocol)} of the servers that exist among these ids."""
    rows = VpnServer.objects.filter(pk__in=set(server_ids)).values_list("pk", "name", "protocol")
    return {pk: (name, protocol) for pk, name, protocol in rows}


def _server_error(
    position: int, protocol: str, server_id: int, servers: Mapping[int, tuple[str, str]]
) -> RowError | None:
    """A user and the server that serves it speak the same protocol."""
    if server_id not in servers:
        return RowError(position, "server", f"{server_id} does not exist")
    name, served = servers[server_id]
    if served != protocol:
        return RowError(position, "server", f"{name!r} serves {served} users; this user uses {protocol}")
    return None


# --- create -------------------------------------------------------------------------


def validate_new_users(
    rows: Sequence[Mapping[str, Any]], *, positions: Sequence[int] | None = None
) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """Clean every row and check usernames against each other and the database, and
    servers against the users' protocols.

    Returns the clean rows (with their positions) and every error found; a row with
    any error is left out of the clean list.
    """
    positions = list(positions) if positions is not None else list(range(1, len(rows) + 1))
    errors: list[RowError] = []
    clean: list[tuple[int, dict[str, Any]]] = []
    first_seen: dict[str, int] = {}
    for position, raw in zip(positions, rows, strict=True):
        values, row_errors = _clean_new_row(position, raw)
        username = values.get("username")
        if username in first_seen:
            row_errors.append(RowError(position, "username", f"{username!r} repeats row {first_seen[username]}"))
        elif username:
            first_seen[username] = position
        if row_errors:
            errors.extend(row_errors)
        else:
            clean.append((position, values))
    for check in (_taken_usernames, _new_users_server_errors):
        found = check(clean)
        if found:
            bad = {error.position for error in found}
            clean = [(position, values) for position, values in clean if position not in bad]
            errors.extend(found)
    errors.sort(key=lambda error: error.position)
    return clean, errors


def _clean_new_row(position: int, raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[RowError]]:
    errors: list[RowError] = []
    unknown = sorted(set(raw) - set(CREATE_FIELDS))
    if unknown:
        errors.append(RowError(position, "columns", f"unknown: {', '.join(unknown)}"))
    values: dict[str, Any] = {}
    for name in CREATE_FIELDS:
        if name not in raw and name in REQUIRED_FIELDS:
            errors.append(RowError(position, name, "is required"))
            continue
        try:
            values[name] = CLEANERS[name](raw.get(name))
        except ValueError as exc:
            errors.append(RowError(position, name, str(exc)))
    if values.get("expire_at") and values.get("on_hold_days"):
        errors.append(RowError(position, "expire_at", "and on_hold_days cannot both be set"))
    return values, errors


def _taken_usernames(clean: list[tuple[int, dict[str, Any]]]) -> list[RowError]:
    usernames = [values["username"] for _, values in clean]
    with connection.cursor() as cursor:
        cursor.execute("SELECT username FROM users_vpnuser WHERE username = ANY(%s)", [usernames])
        taken = {row[0] for row in cursor.fetchall()}
    return [
        RowError(position, "username", f"{values['username']!r} already exists")
        for position, values in clean
        if values["username"] in taken
    ]


def _new_users_server_errors(clean: list[tuple[int, dict[str, Any]]]) -> list[RowError]:
    assigned = [(position, values) for position, values in clean if values.get("server_id")]
    if not assigned:
        return []
    servers = _server_protocols(values["server_id"] for _, values in assigned)
    found = (_server_error(position, values["protocol"], values["server_id"], servers) for position, values in assigned)
    return [error for error in found if error]


def users_create_batch(
    *,
    actor: User | None,
    rows: Sequence[Mapping[str, Any]],
    positions: Sequence[int] | None = None,
    write_good_rows: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BatchResult:
    """Validate every row, then insert all of them in one transaction through COPY.

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
            _after_commit(user_ids=ids, server_ids={values["server_id"] for _, values in clean})
    except IntegrityError:
        # Another write took one of these usernames between the check and the insert.
        result.errors.append(RowError(0, "username", "was taken by another write meanwhile; nothing was written"))
        return result
    result.written = len(ids)
    result.ids = ids
    return result


def _insert(
    clean: list[tuple[int, dict[str, Any]]], *, now: datetime.datetime, progress: Callable[[str], None] | None
) -> list[int]:
    columns = ["id", *CREATE_FIELDS, *_CREDENTIAL_COLUMNS, "created_at", "updated_at"]
    with connection.cursor() as cursor:
        # Keys first, so the audit entry and the caller know them without a read-back.
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('users_vpnuser', 'id')) FROM generate_series(1, %s)", [len(clean)]
        )
        ids = sorted(row[0] for row in cursor.fetchall())
        pending_list = None
        if len(clean) >= LARGE_BATCH:
            # Only this write's COPY uses the larger pending list (restored after it, also
            # inside a caller's longer transaction).
            cursor.execute(
                "SELECT current_setting('gin_pending_list_limit'), set_config('gin_pending_list_limit', %s, true)",
                [LARGE_BATCH_GIN_PENDING_LIST],
            )
            pending_list = cursor.fetchone()[0]
            transaction.on_commit(_clean_search_indexes_later)
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
        if pending_list is not None:
            cursor.execute("SELECT set_config('gin_pending_list_limit', %s, true)", [pending_list])
    return ids


def _clean_search_indexes_later() -> None:
    # Imported here: the tasks module imports the bulk actions, which import this module.
    from procrastinate.exceptions import AlreadyEnqueued

    from users.tasks import clean_search_indexes

    # Already waiting: one merge covers every batch committed before it runs. A savepoint,
    # so the refused insert leaves any surrounding transaction usable.
    with contextlib.suppress(AlreadyEnqueued), transaction.atomic():
        clean_search_indexes.defer()


# --- per-row update -----------------------------------------------------------------


def users_update_batch(
    *,
    actor: User | None,
    changes: Mapping[int, Mapping[str, Any]],
    action: str = "users_update_batch",
) -> BatchResult:
    """Give each user its own values (traffic sync, edits): one set-based UPDATE per field set.

    A change of protocol gets new credentials for that protocol; a user's protocol and
    its server's must match. With any bad value nothing is written. Ids that do not
    exist are skipped and reported as not written.
    """
    result = BatchResult(rows_seen=len(changes))
    cleaned, result.errors = _clean_changes(changes)
    if not result.errors:
        result.errors = _moves_errors(cleaned)
    if result.errors:
        return result
    groups = _group_by_fields(cleaned)
    now = timezone.now()
    ids = list(cleaned)
    with transaction.atomic():
        servers = _servers_of_ids(ids) | {
            values["server_id"] for _, values in cleaned.values() if "server_id" in values
        }
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
        _after_commit(user_ids=ids, server_ids=servers)
    result.written = updated
    result.ids = ids
    return result


def _clean_changes(
    changes: Mapping[int, Mapping[str, Any]],
) -> tuple[dict[int, tuple[int, dict[str, Any]]], list[RowError]]:
    """{id: (position, clean values)} for the changes that name anything, and every error."""
    allowed = set(UPDATE_FIELDS)
    cleaned: dict[int, tuple[int, dict[str, Any]]] = {}
    errors: list[RowError] = []
    for position, (pk, raw) in enumerate(changes.items(), start=1):
        unknown = sorted(set(raw) - allowed)
        if unknown:
            errors.append(RowError(position, "columns", f"cannot be changed here: {', '.join(unknown)}"))
            continue
        values: dict[str, Any] = {}
        for name in sorted(raw):
            try:
                values[name] = CLEANERS[name](raw[name])
            except ValueError as exc:
                errors.append(RowError(position, name, str(exc)))
        if values and len(values) == len(raw):
            cleaned[int(pk)] = (position, values)
    return cleaned, errors


def _moves_errors(cleaned: Mapping[int, tuple[int, dict[str, Any]]]) -> list[RowError]:
    """A change of server or protocol must leave the user on a server of its protocol."""
    moving = {pk: item for pk, item in cleaned.items() if "server_id" in item[1] or "protocol" in item[1]}
    if not moving:
        return []
    current = {
        pk: (protocol, server_id)
        for pk, protocol, server_id in VpnUser.objects.filter(pk__in=list(moving)).values_list(
            "pk", "protocol", "server_id"
        )
    }
    wanted: list[tuple[int, str, int]] = []
    for pk, (position, values) in moving.items():
        if pk not in current:
            continue  # reported as not written, like any unknown id
        protocol, server_id = current[pk]
        server_id = values.get("server_id", server_id)
        if server_id:
            wanted.append((position, values.get("protocol", protocol), server_id))
    servers = _server_protocols(server_id for _, _, server_id in wanted)
    found = (_server_error(position, protocol, server_id, servers) for position, protocol, server_id in wanted)
    return [error for error in found if error]


def _group_by_fields(
    cleaned: Mapping[int, tuple[int, dict[str, Any]]],
) -> dict[tuple[str, ...], list[tuple[int, list[Any]]]]:
    """Users changing the same fields share one temporary table and one UPDATE."""
    groups: dict[tuple[str, ...], list[tuple[int, list[Any]]]] = {}
    for pk, (_, clean) in cleaned.items():
        names = tuple(sorted(clean))
        values = [clean[name] for name in names]
        if "protocol" in names:
            names_with_credentials = (*names, *_CREDENTIAL_COLUMNS)
            values += list(sealed_credentials(values[names.index("protocol")]))
            groups.setdefault(names_with_credentials, []).append((pk, values))
        else:
            groups.setdefault(names, []).append((pk, values))
    return groups


def _update_rows(
    names: tuple[str, ...], rows: list[tuple[int, list[Any]]], *, now: datetime.datetime, table_suffix: int
) -> int:
    table = f"_vpnuser_changes_{table_suffix}"
    column_defs = ", ".join(f"{name} {sql_type(name)}" for name in names)
    assignments = ", ".join(f"{name} = c.{name}" for name in names)
    moved = " OR ".join(f"u.{name} IS DISTINCT FROM c.{name}" for name in ("server_id", "protocol") if name in names)
    if moved:
        assignments += "".join(
            f", {name} = CASE WHEN {moved} THEN NULL ELSE u.{name} END" for name in _ALLOCATION_COLUMNS
        )
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
                f"UPDATE users_vpnuser AS u SET {assignments}, updated_at = %s FROM {table} AS c WHERE u.id = c.id",  # noqa: S608 - names are a whitelist  # nosec B608
                [now],
            )
            updated += cursor.rowcount
            if start + 50_000 < len(rows):
                cursor.execute(f"TRUNCATE {table}")
    return updated


def users_record_traffic(*, actor: User | None, usage: Mapping[int, int]) -> BatchResult:
    """Add each user's new traffic (bytes since the last sync) in one statement.

    Users who used anything are marked online now; an on-hold user's expiry starts on
    this first use (now + its on-hold days). A negative or absurd amount writes nothing.
    Only the servers of users whose status this changes (limit reached, hold over) are
    marked dirty: a poll that changes nobody's status costs no apply.
    """
    result = BatchResult(rows_seen=len(usage))
    for position, (pk, amount) in enumerate(usage.items(), start=1):
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_BYTES:
            result.errors.append(RowError(position, "used_traffic", f"of user {pk} must be 0 to 1 PiB bytes"))
    rows = [(int(pk), amount) for pk, amount in usage.items() if amount > 0]
    if result.errors or not rows:
        return result
    now = timezone.now()
    ids = [pk for pk, _ in rows]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS _vpnuser_traffic")
        cursor.execute("CREATE TEMP TABLE _vpnuser_traffic (id bigint, amount bigint) ON COMMIT DROP")
        with cursor.connection.cursor() as raw, raw.copy("COPY _vpnuser_traffic (id, amount) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            """
            SELECT DISTINCT u.server_id FROM users_vpnuser AS u JOIN _vpnuser_traffic AS t ON u.id = t.id
            WHERE u.server_id IS NOT NULL AND (
                (u.data_limit IS NOT NULL AND u.used_traffic < u.data_limit
                    AND u.used_traffic + t.amount >= u.data_limit)
                OR (u.expire_at IS NULL AND u.on_hold_days IS NOT NULL)
            )
            """
        )
        servers = {row[0] for row in cursor.fetchall()}
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
        audit_record(actor=actor, action="users_record_traffic", target=TARGET, count=written, object_ids=ids)
        _after_commit(user_ids=ids, server_ids=servers)
    result.written = written
    result.ids = ids
    return result


# --- set operations over a selection --------------------------------------------------


def _check_stamp(selected: QuerySet[VpnUser], stamp: str | None) -> None:
    """An operator confirmed a selection of N users; refuse if it holds others now.

    "All matching" is re-read at submit time: a user created, edited or deleted since
    the confirmation page would otherwise be changed (or spared) without being seen.
    """
    if stamp is None:
        return
    now = selection_stamp(selected)
    if now != stamp:
        count = int(now.split(":", 1)[0])
        confirmed = stamp.split(":", 1)[0]
        raise SelectionChanged(
            f"The selection changed after you confirmed it (it now holds {count:,} users; you saw "
            f"{confirmed}); nothing was changed. Look at the list and try again."
        )


def _set_operation(
    *,
    actor: User | None,
    users: QuerySet[VpnUser],
    action: str,
    detail: dict[str, Any],
    write: Callable[[QuerySet[VpnUser]], int],
    new_server: int | None = None,
) -> int:
    with transaction.atomic():
        ids = list(users.order_by().values_list("pk", flat=True)[:MAX_AUDITED_IDS])
        if not ids:
            return 0
        # Small selections by key; "all matching" a huge filter by the filter itself.
        scope = VpnUser.objects.filter(pk__in=ids) if len(ids) < MAX_AUDITED_IDS else users
        servers = _servers_of(scope) | {new_server or 0}
        count = write(users.order_by())
        audit_record(actor=actor, action=action, target=TARGET, count=count, object_ids=ids, detail=detail)
        _after_commit(user_ids=ids, server_ids=servers)
    return count


def users_set_active(
    *, actor: User | None, users: QuerySet[VpnUser], active: bool, selection: str = "", stamp: str | None = None
) -> int:
    """Enable or disable every user in `users`; returns how many changed."""
    now = timezone.now()
    with transaction.atomic():
        _check_stamp(users, stamp)
        return _set_operation(
            actor=actor,
            users=users.filter(is_active=not active),
            action="users_activate" if active else "users_disable",
            detail={"selection": selection},
            write=lambda qs: qs.update(is_active=active, updated_at=now),
        )


def users_reset_traffic(
    *, actor: User | None, users: QuerySet[VpnUser], selection: str = "", stamp: str | None = None
) -> int:
    """Set used traffic to zero; returns how many users had any."""
    now = timezone.now()
    with transaction.atomic():
        _check_stamp(users, stamp)
        return _set_operation(
            actor=actor,
            users=users.filter(used_traffic__gt=0),
            action="users_reset_traffic",
            detail={"selection": selection},
            write=lambda qs: qs.update(used_traffic=0, updated_at=now),
        )


def users_delete(*, actor: User | None, users: QuerySet[VpnUser], selection: str = "", stamp: str | None = None) -> int:
    """Delete every user in `users` (and the rows that belong to them) with one DELETE each; returns how many."""

    def write(qs: QuerySet[VpnUser]) -> int:
        return _delete_set(qs)

    with transaction.atomic():
        _check_stamp(users, stamp)
        return _set_operation(
            actor=actor, users=users, action="users_delete", detail={"selection": selection}, write=write
        )


def _delete_set(users: QuerySet[VpnUser]) -> int:
    """One DELETE … WHERE per table, never Django's per-row collector.

    Once any model references VpnUser (subscriptions do), `QuerySet.delete()` loads
    every selected user into Python first (a million rows, each credential decrypted)
    to cascade by primary keys. The rows that reference users are removed (or
    detached) here by the same filter instead, then the users by one statement.
    """
    if not all(_translatable(relation) for relation in VpnUser._meta.related_objects):
        # A relation one statement cannot follow (a custom on_delete, a cascade that goes
        # on to further tables): Django's own collector, slower but exactly right.
        return users.order_by().delete()[1].get(VpnUser._meta.label, 0)
    selected = users.order_by().values("pk")
    # Compiled once, as a top-level query: nested as a Django subquery its tables get
    # aliases (U0), and a search filter's raw SQL that names "users_vpnuser" would break.
    sql, params = selected.query.sql_with_params()
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for relation in VpnUser._meta.related_objects:
            model = cast("type[Model]", relation.related_model)  # resolved once the apps are ready
            table, column = quote(model._meta.db_table), quote(relation.field.column)
            on_delete = relation.on_delete
            if on_delete is CASCADE:  # a model nothing references (_translatable): one DELETE is the cascade
                cursor.execute(f"DELETE FROM {table} WHERE {column} IN ({sql})", params)  # noqa: S608 - compiled SQL  # nosec B608
            elif on_delete is SET_NULL:
                cursor.execute(f"UPDATE {table} SET {column} = NULL WHERE {column} IN ({sql})", params)  # noqa: S608  # nosec B608
            elif on_delete in (PROTECT, RESTRICT):
                cursor.execute(f"SELECT 1 FROM {table} WHERE {column} IN ({sql}) LIMIT 1", params)  # noqa: S608  # nosec B608
                if cursor.fetchone():
                    raise BulkRefused(
                        f"Some selected users are still referenced by {model._meta.verbose_name_plural}: "
                        "remove those first. Nothing was deleted."
                    )
            # DO_NOTHING: the database's own constraint decides, as Django would leave it.
        cursor.execute(f"DELETE FROM users_vpnuser WHERE id IN ({sql})", params)  # noqa: S608 - Django-compiled SQL  # nosec B608
        return cursor.rowcount


def _translatable(relation: Any) -> bool:
    """Whether `_delete_set` can follow this relation with one statement."""
    if relation.on_delete in (SET_NULL, PROTECT, RESTRICT, DO_NOTHING):
        return True
    model = cast("type[Model]", relation.related_model)
    return relation.on_delete is CASCADE and not model._meta.related_objects


# --- bulk edit ------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkEdit:
    """What one bulk edit sets on every selected user; a field left out stays as it is.

    `values` gives BULK_EDIT_FIELDS one value for everyone (None clears: no server,
    unlimited, never expires). `add_days` moves expiry later (on-hold users get a longer
    hold; users without an expiry keep none); `add_bytes` raises the data limit
    (unlimited users stay unlimited).
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    add_days: int | None = None
    add_bytes: int | None = None


def _clean_bulk_edit(edit: BulkEdit) -> dict[str, Any]:
    unknown = sorted(set(edit.values) - set(BULK_EDIT_FIELDS))
    if unknown:
        raise BulkRefused(f"A bulk edit cannot set {', '.join(unknown)}.")
    values: dict[str, Any] = {}
    for name, raw in edit.values.items():
        try:
            values[name] = CLEANERS[name](raw)
        except ValueError as exc:
            label = name.removesuffix("_id").replace("_", " ").capitalize()
            raise BulkRefused(f"{label} {exc}.") from None
    if "expire_at" in values and edit.add_days is not None:
        raise BulkRefused("Set an expiry date or a number of days to add, not both.")
    if "data_limit" in values and edit.add_bytes is not None:
        raise BulkRefused("Set a data limit or an amount of data to add, not both.")
    days, amount = edit.add_days, edit.add_bytes
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_ON_HOLD_DAYS):
        raise BulkRefused(f"Days to add must be a whole number from 1 to {MAX_ON_HOLD_DAYS}.")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_BYTES):
        raise BulkRefused("Data to add must be between 1 byte and 1 PiB.")
    if not values and days is None and amount is None:
        raise BulkRefused("Choose at least one field to change.")
    return values


def _check_server_fits(users: QuerySet[VpnUser], server_id: int) -> None:
    server = VpnServer.objects.filter(pk=server_id).values("name", "protocol").first()
    if server is None:
        raise BulkRefused("That server does not exist (any more); nothing was changed.")
    mismatched = users.order_by().exclude(protocol=server["protocol"]).count()
    if mismatched:
        raise BulkRefused(
            f"{mismatched:,} of the selected users do not use {server['protocol']}, and server "
            f"{server['name']!r} serves only {server['protocol']} users; nothing was changed. "
            "Narrow the selection (filter by protocol) and try again."
        )


def _bulk_assignments(values: Mapping[str, Any], edit: BulkEdit, now: datetime.datetime) -> dict[str, Any]:
    """The UPDATE's SET list: one value for everyone, or an expression of each row."""
    assignments: dict[str, Any] = dict(values)
    if "server_id" in values:
        # Users already on that server keep their tunnel address and port.
        for name in _ALLOCATION_COLUMNS:
            assignments[name] = Case(When(server_id=values["server_id"], then=F(name)), default=Value(None))
    if "expire_at" in values:
        assignments["on_hold_days"] = None  # a date (or "never") replaces a hold
    if edit.add_days is not None:
        assignments["expire_at"] = Case(
            When(
                expire_at__isnull=False, then=Greatest(F("expire_at"), Value(now)) + datetime.timedelta(edit.add_days)
            ),
            default=F("expire_at"),
        )
        assignments["on_hold_days"] = Case(
            When(
                expire_at__isnull=True,
                on_hold_days__isnull=False,
                then=Least(
                    F("on_hold_days") + edit.add_days, Value(MAX_ON_HOLD_DAYS), output_field=PositiveIntegerField()
                ),
            ),
            default=F("on_hold_days"),
        )
    if edit.add_bytes is not None:
        # LEAST ignores NULL in PostgreSQL: without the CASE, unlimited users would get 1 PiB.
        assignments["data_limit"] = Case(
            When(
                data_limit__isnull=False,
                then=Least(F("data_limit") + edit.add_bytes, Value(MAX_BYTES), output_field=BigIntegerField()),
            ),
            default=Value(None),
            output_field=BigIntegerField(),
        )
    assignments["updated_at"] = now
    return assignments


def describe_bulk_edit(values: Mapping[str, Any], edit: BulkEdit) -> dict[str, Any]:
    """The edit in words an audit entry and a message can carry."""
    described: dict[str, Any] = {name: values[name] for name in BULK_EDIT_FIELDS if name in values}
    if isinstance(described.get("expire_at"), datetime.date):
        described["expire_at"] = described["expire_at"].isoformat()
    if edit.add_days is not None:
        described["add_days"] = edit.add_days
    if edit.add_bytes is not None:
        described["add_bytes"] = edit.add_bytes
    return described


def users_check_stamp(*, users: QuerySet[VpnUser], stamp: str) -> None:
    """Raise SelectionChanged unless `users` still holds what the operator confirmed."""
    _check_stamp(users, stamp)


def users_bulk_edit_check(*, users: QuerySet[VpnUser], edit: BulkEdit, stamp: str | None = None) -> None:
    """Everything users_bulk_edit refuses, checked without writing (before a queued edit)."""
    values = _clean_bulk_edit(edit)
    _check_stamp(users, stamp)
    if values.get("server_id") is not None:
        _check_server_fits(users, values["server_id"])


def users_bulk_edit(
    *, actor: User | None, users: QuerySet[VpnUser], edit: BulkEdit, selection: str = "", stamp: str | None = None
) -> int:
    """Set the chosen fields on every selected user: one UPDATE, one audit entry.

    Raises BulkRefused (nothing written) for a bad value, both a date and days to add,
    a server some selected users cannot use, or (with `stamp`) a selection that changed
    since the operator confirmed it. Returns how many users were edited.
    """
    values = _clean_bulk_edit(edit)
    now = timezone.now()
    with transaction.atomic():
        _check_stamp(users, stamp)
        new_server = values.get("server_id")
        if new_server is not None:
            _check_server_fits(users, new_server)
        assignments = _bulk_assignments(values, edit, now)
        return _set_operation(
            actor=actor,
            users=users,
            action="users_bulk_edit",
            detail={"selection": selection, "set": describe_bulk_edit(values, edit)},
            write=lambda qs: qs.update(**assignments),
            new_server=new_server,
        )
