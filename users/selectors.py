"""Reads on VPN users that stay fast at a million rows.

- Filters map to indexed predicates: the effective status through `status_q` (partial
  indexes), `*` wildcards through `UPPER(col) LIKE` (trigram indexes on PostgreSQL).
- Search: 3+ characters match substrings of username and e-mail (trigram) or words of
  username, e-mail and note (full text, ranked); shorter input matches a username
  exactly through the unique index instead of scanning.
- Pagination: keyset (`after` / `before` cursors) for next, previous, first and last
  at any depth; page numbers by offset only up to `MAX_OFFSET` rows.
- Counts: exact on small tables; `pg_class.reltuples` for the whole big table; a
  filter is counted up to `COUNT_CAP` rows and estimated by the planner beyond.
- Lists, counts and statistics go through the tagged cache when it is configured.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import BooleanField, Count, F, FloatField, Lookup, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.expressions import OrderBy, RawSQL
from django.db.models.functions import Concat
from django.utils import timezone

from containers.models import VpnServer
from perf.cache import tagged_cache
from users.credentials import CREDENTIAL_COLUMNS
from users.models import Protocol, Status, VpnUser, status_expression, status_q
from users.schema import EXPORT_COLUMNS, EXPORT_READS, LIST_READS

__all__ = ["EXPORT_COLUMNS"]  # re-exported: the export's header, read by csv_io and the commands

PAGE_SIZE = 50
# Page numbers are reached by OFFSET only this deep; further with Next/Last (keyset).
MAX_OFFSET = 10_000
# A filtered list is counted exactly up to this many rows, then estimated.
# Counting a text search costs about COUNT_CAP / selectivity rows; a cap too low would
# instead send searches with a few hundred matches down a long index walk (_keyset_rows).
COUNT_CAP = 500
# A search is ranked by default up to this many matches (ranking sorts every match).
RANK_LIMIT = COUNT_CAP
# Below this many rows (by the planner's estimate) the whole table is counted exactly.
ESTIMATE_THRESHOLD = 50_000
MIN_SUBSTRING = 3
# A list page is cancelled after this long (then the operator is asked to narrow it).
QUERY_TIMEOUT_MS = 5_000
MAX_SEARCH_LENGTH = 200
CACHE_TIMEOUT = 30


@dataclass(frozen=True)
class Ordering:
    label: str
    fields: tuple[str, ...]
    keyset: bool = True


ORDERINGS: dict[str, Ordering] = {
    "-id": Ordering("newest first", ("-id",)),
    "id": Ordering("oldest first", ("id",)),
    "username": Ordering("username A-Z", ("username",)),
    "-username": Ordering("username Z-A", ("-username",)),
    "-used_traffic": Ordering("most traffic", ("-used_traffic", "-id")),
    "used_traffic": Ordering("least traffic", ("used_traffic", "id")),
    # These sort on computed values: page numbers only (no index can serve a cursor).
    "status": Ordering("status", ("status", "-id"), keyset=False),
    "relevance": Ordering("best match (with a search)", ("-rank", "-id"), keyset=False),
}
DEFAULT_ORDERING = "-id"


@dataclass(frozen=True)
class UserFilter:
    """Everything that selects users on the list, in the export and in "all matching"."""

    q: str = ""
    username: str = ""
    email: str = ""
    status: str = ""
    protocol: str = ""
    server: str = ""
    created_from: datetime.date | None = None
    created_to: datetime.date | None = None
    expires_from: datetime.date | None = None
    expires_to: datetime.date | None = None
    used_min: int | None = None
    used_max: int | None = None

    @property
    def is_empty(self) -> bool:
        return self == UserFilter()

    def cache_key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), default=str, sort_keys=True).encode()).hexdigest()[:24]

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in asdict(self).items() if v not in ("", None)]
        return "all matching " + (", ".join(parts) if parts else "(everything)")


@dataclass
class CountInfo:
    value: int
    exact: bool
    # A text search's matches among the newest COUNT_WALK ids, when its count looked there
    # (the page then knows whether walking those ids can fill it).
    recent: int | None = None

    @property
    def display(self) -> str:
        return f"{self.value:,}" if self.exact else f"about {self.value:,}"


@dataclass
class UserPage:
    rows: list[dict[str, Any]]
    count: CountInfo
    ordering: str
    page_number: int | None = None
    has_next: bool = False
    has_previous: bool = False
    next_params: dict[str, str] = field(default_factory=dict)
    previous_params: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def total_pages(self) -> int:
        return max(1, math.ceil(self.count.value / PAGE_SIZE))


class SearchRefused(ValueError):
    """A filter value that cannot be answered quickly or safely; the message says why."""


# --- the tagged cache ----------------------------------------------------------------


def _cached(key: str, compute: Callable[[], Any], *, tags: list[str], timeout: int = CACHE_TIMEOUT) -> Any:
    """Cache-aside through perf.cache's tagged API (single flight, dropped when a tag changes)."""
    if not settings.USERS_CACHE_READS:
        return compute()
    return tagged_cache().get_or_set(f"users:{key}", compute, timeout, tags=tags)


# --- filters and search ----------------------------------------------------------------


class UpperLike(Lookup):
    """`UPPER(col) LIKE UPPER(pattern)`: the form the trigram indexes on UPPER(col) serve."""

    lookup_name = "upperlike"
    prepare_rhs = False

    def as_sql(self, compiler: Any, conn: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, conn)
        rhs, rhs_params = self.process_rhs(compiler, conn)
        return f"UPPER({lhs}::text) LIKE UPPER({rhs})", [*lhs_params, *rhs_params]


def wildcard_pattern(value: str) -> str:
    """'*' is the only wildcard an operator types; LIKE's own % _ \\ are escaped."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _wildcard_filter(qs: QuerySet[VpnUser], column: str, value: str) -> QuerySet[VpnUser]:
    if "*" not in value:
        if column == "username":
            return qs.filter(username=value.lower())
        return qs.filter(UpperLike(F(column), wildcard_pattern(value)))
    longest = max((len(part) for part in value.split("*")), default=0)
    if longest < MIN_SUBSTRING:
        raise SearchRefused(f"A {column} pattern needs at least {MIN_SUBSTRING} characters in a row besides '*'.")
    return qs.filter(UpperLike(F(column), wildcard_pattern(value)))


def _fts(sql: str, q: str, output: Any) -> RawSQL:
    # The query text is a parameter; `sql` is one of two constants below.
    return RawSQL(sql.replace("{query}", "websearch_to_tsquery('simple', %s)"), [q], output_field=output)  # noqa: S611  # nosec B611


def apply_search(qs: QuerySet[VpnUser], q: str) -> tuple[QuerySet[VpnUser], str | None, bool]:
    """Returns the searched queryset, a note for the operator, and whether it can rank."""
    q = q.strip()
    if not q:
        return qs, None, False
    if "\x00" in q:
        raise SearchRefused("The search contains a null byte.")
    if len(q) > MAX_SEARCH_LENGTH:
        raise SearchRefused(f"The search is limited to {MAX_SEARCH_LENGTH} characters.")
    if len(q) < MIN_SUBSTRING:
        note = f"Searches shorter than {MIN_SUBSTRING} characters match a username exactly."
        return qs.filter(username=q.lower()), note, False
    condition = (
        Q(username__icontains=q)
        | Q(email__icontains=q)
        | Q(_fts('"users_vpnuser"."search_vector" @@ {query}', q, BooleanField()))
    )
    rank = _fts('ts_rank("users_vpnuser"."search_vector", {query})', q, FloatField())
    return qs.filter(condition).annotate(rank=rank), None, True


def filtered_users(
    flt: UserFilter, *, now: datetime.datetime | None = None
) -> tuple[QuerySet[VpnUser], list[str], bool]:
    """The users matching `flt`, notes for the operator, and whether a rank is available.

    Raises SearchRefused for input that cannot be answered without a table scan.
    """
    now = now or timezone.now()
    qs = VpnUser.objects.all()
    notes: list[str] = []
    if flt.username:
        qs = _wildcard_filter(qs, "username", flt.username)
    if flt.email:
        qs = _wildcard_filter(qs, "email", flt.email)
    if flt.status:
        qs = qs.filter(status_q(flt.status, now))
    if flt.protocol:
        qs = qs.filter(protocol=flt.protocol)
    if flt.server:
        qs = qs.filter(server__isnull=True) if flt.server == "none" else qs.filter(server_id=int(flt.server))
    if flt.created_from:
        qs = qs.filter(created_at__gte=_start_of(flt.created_from))
    if flt.created_to:
        qs = qs.filter(created_at__lt=_start_of(flt.created_to + datetime.timedelta(days=1)))
    if flt.expires_from:
        qs = qs.filter(expire_at__gte=_start_of(flt.expires_from))
    if flt.expires_to:
        qs = qs.filter(expire_at__lt=_start_of(flt.expires_to + datetime.timedelta(days=1)))
    if flt.used_min is not None:
        qs = qs.filter(used_traffic__gte=flt.used_min)
    if flt.used_max is not None:
        qs = qs.filter(used_traffic__lte=flt.used_max)
    qs, note, ranked = apply_search(qs, flt.q)
    if note:
        notes.append(note)
    return qs, notes, ranked


def _start_of(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=timezone.get_current_timezone())


def server_choices() -> list[tuple[int, str]]:
    """(id, name) of the servers for the filter control; cached until a server changes."""

    def compute() -> list[tuple[int, str]]:
        return [(pk, str(name)) for pk, name in VpnServer.objects.order_by("pk").values_list("pk", "name")[:500]]

    return _cached("server-choices", compute, tags=["servers"], timeout=300)


def selection_queryset(flt: UserFilter) -> QuerySet[VpnUser]:
    """'All N matching this filter' for a bulk action: the filter itself, never a list of ids."""
    qs, _, _ = filtered_users(flt)
    return qs


def selection_stamp(users: QuerySet[VpnUser]) -> str:
    """How many users a selection holds, and which (the sum of their keys), in one aggregate.

    A confirmation page shows the count and carries the stamp; the write compares it
    again, so users who joined or left "all matching" in between are not touched unseen.
    """
    totals = users.order_by().aggregate(n=Count("pk"), keys=Sum("pk"))
    return f"{totals['n']}:{totals['keys'] or 0}"


def servers_by_name() -> dict[str, list[tuple[int, str]]]:
    """{server name: [(id, protocol), …]} for naming servers in CSV (a name may repeat across hosts)."""
    found: dict[str, list[tuple[int, str]]] = {}
    for pk, name, host, protocol in VpnServer.objects.values_list("pk", "name", "host__name", "protocol"):
        found.setdefault(name, []).append((pk, protocol))
        found.setdefault(f"{host}/{name}", []).append((pk, protocol))
    return found


def server_options() -> list[tuple[int, str, str]]:
    """(id, name, protocol) of every server, for the server choice of the forms and the bulk edit."""

    def compute() -> list[tuple[int, str, str]]:
        rows = VpnServer.objects.order_by("name", "pk").values_list("pk", "name", "protocol")[:2000]
        return [(pk, str(name), str(protocol)) for pk, name, protocol in rows]

    return _cached("server-options", compute, tags=["servers"], timeout=300)


# --- counting ---------------------------------------------------------------------


def estimated_table_rows() -> int | None:
    """The planner's row count for the table (<1 ms), or None before the first ANALYZE."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'users_vpnuser'::regclass")
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] >= 0 else None


def _planner_estimate(qs: QuerySet[VpnUser]) -> int:
    sql, params = qs.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


@contextmanager
def bitmap_scans_only() -> Iterator[None]:
    """Plan the statements inside with bitmap index scans only (no sequential or index walk).

    A text search's matches are found through the trigram/full-text indexes, whatever
    the planner guesses their density to be: with a LIMIT and a misestimate it would
    rather walk the table "until enough match", which reads a million rows when the
    matches sit at the far end. Transaction-local settings, restored on the way out.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('enable_seqscan'), current_setting('enable_indexscan'), "
            "set_config('enable_seqscan', 'off', true), set_config('enable_indexscan', 'off', true)"
        )
        seqscan, indexscan, _, _ = cursor.fetchone()
        try:
            yield
        finally:
            cursor.execute(
                "SELECT set_config('enable_seqscan', %s, true), set_config('enable_indexscan', %s, true)",
                [seqscan, indexscan],
            )


# The newest ids a text search's capped count walks first (a bounded walk).
COUNT_WALK = 12_000


def _capped_search_count(qs: QuerySet[VpnUser]) -> tuple[int, int]:
    """How many users match a text search, up to COUNT_CAP + 1, at a bounded cost; and how
    many of them among the newest COUNT_WALK ids.

    "Scan until COUNT_CAP + 1 match" is what the planner picks, and it reads a million
    rows when the matches sit far from where the scan starts. Instead: the newest
    COUNT_WALK ids (a term matching a few percent of the users is over the cap there);
    only if they hold fewer, every match through the search indexes' bitmap (its cost
    is the number of matches, and it stops reading rows at the cap). The planner's
    estimate cannot choose between the two: it rates '042' and 'l12' alike, and one is
    clustered far from the newest rows while the other is spread evenly.
    """
    edge = VpnUser.objects.aggregate(edge=Max("id"))["edge"]  # an index endpoint: < 1 ms
    if edge is None:
        return 0, 0
    recent = qs.filter(id__gt=edge - COUNT_WALK).order_by().values("pk")[: COUNT_CAP + 1].count()
    if recent > COUNT_CAP:
        return recent, recent
    with bitmap_scans_only():
        return qs.order_by().values("pk")[: COUNT_CAP + 1].count(), recent


def count_users(qs: QuerySet[VpnUser], *, filtered: bool, text_search: bool = False) -> CountInfo:
    """Never count(*) over a big table: estimate the whole table, cap a filter's count.

    A text search's capped count is bounded whatever the matches' positions
    (_capped_search_count).
    """
    if not filtered:
        estimate = estimated_table_rows()
        if estimate is not None and estimate >= ESTIMATE_THRESHOLD:
            return CountInfo(estimate, exact=False)
        return CountInfo(qs.order_by().count(), exact=True)
    if text_search:
        capped, recent = _capped_search_count(qs)
        if capped <= COUNT_CAP:
            return CountInfo(capped, exact=True, recent=recent)
        return CountInfo(max(_planner_estimate(qs), COUNT_CAP + 1), exact=False, recent=recent)
    capped = qs.order_by().values("pk")[: COUNT_CAP + 1].count()
    if capped <= COUNT_CAP:
        return CountInfo(capped, exact=True)
    return CountInfo(max(_planner_estimate(qs), COUNT_CAP + 1), exact=False)


# --- the list page -----------------------------------------------------------------


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(token: str, ordering: Ordering) -> list[Any]:
    """The values of the last row seen; raises ValueError for anything not made by encode_cursor."""
    try:
        padded = token + "=" * (-len(token) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, UnicodeError, json.JSONDecodeError) as exc:
        raise ValueError("not a page link") from exc
    if not isinstance(values, list) or len(values) != len(ordering.fields):
        raise ValueError("not a page link")
    for name, value in zip(ordering.fields, values, strict=True):
        expected = str if name.lstrip("-") == "username" else int
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ValueError("not a page link")
    return values


def _keyset_condition(ordering: Ordering, values: list[Any], *, after: bool) -> Q:
    descending = ordering.fields[0].startswith("-")
    greater = after != descending
    columns = [name.lstrip("-") for name in ordering.fields]
    if len(columns) == 1:
        return Q(**{f"{columns[0]}__{'gt' if greater else 'lt'}": values[0]})
    # A row-value comparison: one index range scan on (col, id) at any depth.
    left = ", ".join(f'"users_vpnuser"."{column}"' for column in columns)
    right = ", ".join(["%s"] * len(values))
    operator = ">" if greater else "<"
    # Column names come from the ORDERINGS whitelist; the values are parameters.
    return Q(RawSQL(f"({left}) {operator} ({right})", values, output_field=BooleanField()))  # noqa: S611  # nosec B611


def _reverse(fields: tuple[str, ...]) -> list[str]:
    return [name[1:] if name.startswith("-") else f"-{name}" for name in fields]


def _row_values(row: dict[str, Any], ordering: Ordering) -> list[Any]:
    return [row[name.lstrip("-")] for name in ordering.fields]


@contextmanager
def bounded_time() -> Iterator[None]:
    """A list read that PostgreSQL cannot answer within QUERY_TIMEOUT_MS is cancelled.

    Some inputs stay slow whatever the indexes (a substring whose matches all sit far
    from the start of the order): the operator gets a message instead of a worker held
    until gunicorn kills it.
    """
    if connection.in_atomic_block:
        yield
        return
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{QUERY_TIMEOUT_MS}ms"])
            yield
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "57014":  # query_canceled
            raise
        raise SearchRefused(
            f"This list took longer than {QUERY_TIMEOUT_MS / 1000:g} s to read; narrow the search or filter."
        ) from None


def users_page(
    flt: UserFilter,
    *,
    ordering: str = DEFAULT_ORDERING,
    after: str = "",
    before: str = "",
    last: bool = False,
    page: int | None = None,
) -> UserPage:
    """One page of the list; raises SearchRefused for a filter that would scan the table."""
    now = timezone.now()
    qs, notes, ranked = filtered_users(flt, now=now)
    if ordering == "relevance" and not ranked:
        notes.append("Best match needs a search of 3 or more characters; showing newest first.")
        ordering = DEFAULT_ORDERING
    # A search on the first page is ranked by default when ranking is cheap (few matches).
    auto_rank = bool(flt.q) and ranked and ordering == DEFAULT_ORDERING and not (after or before or last or page)
    key = f"page:{flt.cache_key()}:{ordering}:{after}:{before}:{int(last)}:{page}:{int(auto_rank)}"

    def compute() -> dict[str, Any]:
        with bounded_time():
            result = _compute_page(
                qs, flt, ordering, now=now, after=after, before=before, last=last, page=page, auto_rank=auto_rank
            )
        return asdict(result)

    data = _cached(key, compute, tags=["users"])
    result = UserPage(**{**data, "count": CountInfo(**data["count"])})
    result.notes = notes + result.notes
    return result


def _compute_page(
    qs: QuerySet[VpnUser],
    flt: UserFilter,
    ordering: str,
    *,
    now: datetime.datetime,
    after: str,
    before: str,
    last: bool,
    page: int | None,
    auto_rank: bool = False,
) -> UserPage:
    """Count, choose the order, then read one page by number (OFFSET) or by cursor (keyset)."""
    notes: list[str] = []
    rows_qs = qs.annotate(status=status_expression(now)).values(*LIST_READS, "status")
    text_search = bool(flt.q or flt.username or flt.email)
    count = count_users(qs, filtered=not flt.is_empty, text_search=text_search)
    if auto_rank:
        if count.exact and count.value <= RANK_LIMIT:
            ordering = "relevance"
        else:
            # Ranking means scoring and sorting every match; newest first reads 50 rows.
            notes.append(f"More than {RANK_LIMIT:,} matches: newest first. Choose “best match” to rank them.")
    spec = ORDERINGS[ordering]
    if not spec.keyset or page:
        result = _numbered_page(rows_qs, count, ordering, page or 1, notes)
    else:
        result = _keyset_page(rows_qs, count, ordering, after, before, last, notes, text_search=text_search)
    for row in result.rows:
        row.pop("rank", None)
    return result


def _numbered_page(rows_qs: QuerySet[Any], count: CountInfo, ordering: str, number: int, notes: list[str]) -> UserPage:
    """Page `number` by OFFSET, as deep as MAX_OFFSET (computed orders have no cursor)."""
    total_pages = max(1, math.ceil(count.value / PAGE_SIZE))
    if (number - 1) * PAGE_SIZE > MAX_OFFSET:
        notes.append(f"Page numbers go up to {MAX_OFFSET // PAGE_SIZE + 1}; use Next and Last, or narrow the filter.")
        number = 1
    elif number > total_pages and count.exact:
        notes.append(f"There is no page {number}; showing page 1.")
        number = 1
    start = (number - 1) * PAGE_SIZE
    window = list(rows_qs.order_by(*ORDERINGS[ordering].fields)[start : start + PAGE_SIZE + 1])
    has_next = len(window) > PAGE_SIZE and number * PAGE_SIZE <= MAX_OFFSET
    result = UserPage(window[:PAGE_SIZE], count, ordering, number, has_next, number > 1, notes=notes)
    if has_next:
        result.next_params = {"page": str(number + 1)}
    if number > 1:
        result.previous_params = {"page": str(number - 1)}
    return result


def _keyset_page(
    rows_qs: QuerySet[Any],
    count: CountInfo,
    ordering: str,
    after: str,
    before: str,
    last: bool,
    notes: list[str],
    *,
    text_search: bool,
) -> UserPage:
    """The page after or before a cursor (or the last page): one index range scan at any depth."""
    spec = ORDERINGS[ordering]
    values: list[Any] | None = None
    if after or before:
        try:
            values = decode_cursor(after or before, spec)
        except ValueError:
            notes.append("That page link is not valid for this list; showing the first page.")
    backwards = last or (values is not None and bool(before))
    order = _reverse(spec.fields) if backwards else list(spec.fields)
    if values is not None:
        rows_qs = rows_qs.filter(_keyset_condition(spec, values, after=not backwards))
    cursor_id = values[0] if values is not None and spec.fields in (("-id",), ("id",)) else None
    # Newest first from the top: the count walked the newest ids already; if they hold less
    # than a page, walking them again cannot fill it.
    walk = not (order[0] == "-id" and cursor_id is None and count.recent is not None and count.recent <= PAGE_SIZE)
    window = _keyset_rows(
        rows_qs, order, text_search=text_search, few_matches=count.exact, cursor_id=cursor_id, walk=walk
    )
    more = len(window) > PAGE_SIZE
    rows = window[:PAGE_SIZE]
    if backwards:
        rows.reverse()
        has_previous, has_next = more, values is not None and not last
    else:
        has_next, has_previous = more, values is not None
    total_pages = max(1, math.ceil(count.value / PAGE_SIZE))
    number = total_pages if last else (1 if values is None else None)
    result = UserPage(rows, count, ordering, number, has_next, has_previous, notes=notes)
    if rows:
        if has_next:
            result.next_params = {"after": encode_cursor(_row_values(rows[-1], spec))}
        if has_previous:
            result.previous_params = {"before": encode_cursor(_row_values(rows[0], spec))}
    return result


UNINDEXED_SORTABLE = frozenset({"id", "username", "used_traffic"})


def unindexed_order(name: str) -> OrderBy:
    """The same order as `name`, as an expression no index provides: sort after filtering."""
    column = name.lstrip("-")
    expression = Concat(F(column), Value("")) if column == "username" else F(column) + Value(0)
    return expression.desc() if name.startswith("-") else expression.asc()


# Id windows a text search with many matches reads newest (or oldest) first: the first by a
# bounded walk of the primary key, the next ones through the search indexes' bitmap.
SEARCH_WINDOWS = (8_192, 65_536, 524_288)


def _keyset_rows(
    qs: QuerySet[Any],
    order: list[str],
    *,
    text_search: bool,
    few_matches: bool,
    cursor_id: int | None = None,
    walk: bool = True,
) -> list[dict[str, Any]]:
    """One page of rows in `order`, planned so a rare search term cannot walk the table.

    The planner guesses a text search's selectivity badly: it walks the primary key (or
    username) index "until 51 rows match", which reads the whole table when the term is
    rare (6.7 s for 20 matches at 1M rows). A search with few matches (the capped count
    says exactly how many) is therefore sorted after the trigram/full-text indexes found
    them. With many matches in id order, see _search_by_id_windows.
    """
    limit = PAGE_SIZE + 1
    if text_search and few_matches:
        return list(qs.order_by(*[unindexed_order(name) for name in order])[:limit])
    if text_search and order[0].lstrip("-") == "id":
        return _search_by_id_windows(qs, descending=order[0].startswith("-"), cursor_id=cursor_id, walk=walk)
    return list(qs.order_by(*order)[:limit])


def _search_by_id_windows(
    qs: QuerySet[Any], *, descending: bool, cursor_id: int | None, walk: bool = True
) -> list[dict[str, Any]]:
    """Newest (or oldest) matches of a search with many matches, in windows of ids.

    Walking the primary key "until 51 rows match" costs as many rows as lie between the
    start and the 51st match: cheap when matches are spread (a few hundred rows), a whole
    stretch of the table when they cluster far from the newest rows ('042' over sequential
    names). Instead: the newest SEARCH_WINDOWS[0] ids by a bounded walk (skipped when the
    count saw too few matches there); if they hold fewer than a page, each wider window
    through the search indexes' bitmap restricted to
    the id range, sorted (top-N). The work is bounded by the window, not by where the
    matches sit; beyond the last window, every match through the bitmap.
    """
    limit = PAGE_SIZE + 1
    bounds = VpnUser.objects.all()
    if cursor_id is not None:
        bounds = bounds.filter(id__lt=cursor_id) if descending else bounds.filter(id__gt=cursor_id)
    anchor = bounds.aggregate(edge=Max("id") if descending else Min("id"))["edge"]  # an index endpoint: < 1 ms
    if anchor is None:
        return []
    order = unindexed_order("-id" if descending else "id")
    for number, size in enumerate(SEARCH_WINDOWS):
        if number == 0 and not walk:
            continue
        window = qs.filter(id__gt=anchor - size) if descending else qs.filter(id__lt=anchor + size)
        if number == 0:
            rows = list(window.order_by("-id" if descending else "id")[:limit])
        else:
            with bitmap_scans_only():
                rows = list(window.order_by(order)[:limit])
        if len(rows) == limit:
            return rows
    with bitmap_scans_only():
        return list(qs.order_by(order)[:limit])


# --- one user, statistics, export ----------------------------------------------------


def user_detail(pk: int, *, with_credentials: bool = False) -> VpnUser | None:
    """One user with its status; the credential columns are deferred unless asked for (the reveal)."""
    qs = VpnUser.objects.all() if with_credentials else VpnUser.objects.defer(*CREDENTIAL_COLUMNS)
    qs = qs.select_related("server")
    return qs.annotate(status=status_expression(timezone.now())).filter(pk=pk).first()


def credentials_of(user: VpnUser) -> dict[str, str]:
    """The secrets of a user read by `user_detail(pk, with_credentials=True)`, labelled for the page."""
    if user.protocol == Protocol.VLESS:
        return {"UUID": str(user.credential_uuid)}
    if user.protocol == Protocol.SHADOWSOCKS:
        return {"Password": user.credential_password}
    return {"Private key": user.wg_private_key, "Public key": user.wg_public_key}


def user_credentials(pk: int) -> dict[str, str]:
    """The secrets of one user, for the explicit reveal that needs the change permission."""
    user = user_detail(pk, with_credentials=True)
    return {} if user is None else credentials_of(user)


def _compute_stats() -> dict[str, Any]:
    now = timezone.now()
    aggregates: dict[str, Any] = {"total": Count("pk")}
    for status in Status:
        aggregates[f"status_{status.value}"] = Count("pk", filter=status_q(status.value, now))
    for protocol in Protocol:
        aggregates[f"protocol_{protocol.value}"] = Count("pk", filter=Q(protocol=protocol.value))
    aggregates["used_total"] = Sum("used_traffic")
    aggregates["limit_total"] = Sum("data_limit")
    aggregates["expiring_7d"] = Count(
        "pk", filter=Q(is_active=True, expire_at__gt=now, expire_at__lte=now + datetime.timedelta(days=7))
    )
    values = VpnUser.objects.aggregate(**aggregates)
    values["used_total"] = values["used_total"] or 0
    values["limit_total"] = values["limit_total"] or 0
    values["computed_at"] = now.isoformat()
    return values


def users_stats() -> dict[str, Any]:
    """Counts by effective status and protocol, traffic totals, expiring in 7 days: one query."""
    return _cached("stats", _compute_stats, tags=["users", "stats"], timeout=60)


def export_rows(flt: UserFilter, *, chunk_size: int = 2_000) -> Iterator[tuple[Any, ...]]:
    """Rows for CSV, streamed through a server-side cursor; never the credentials."""
    qs, _, _ = filtered_users(flt)
    qs = qs.annotate(status=status_expression(timezone.now())).order_by("id")
    yield from qs.values_list(*EXPORT_READS).iterator(chunk_size=chunk_size)


def warm_hot_reads(progress: Callable[[str], None]) -> int:
    """Fill the cache with what the pages read first; returns how many entries it warmed."""
    warmed = 0
    users_stats()
    progress("users: statistics")
    warmed += 1
    for ordering in ("-id", "username", "-used_traffic"):
        users_page(UserFilter(), ordering=ordering)
        progress(f"users: first list page, {ORDERINGS[ordering].label}")
        warmed += 1
    for status in Status:
        users_page(UserFilter(status=status.value))
        progress(f"users: first list page, status {status.label}")
        warmed += 1
    return warmed
