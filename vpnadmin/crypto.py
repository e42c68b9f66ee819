"""Secrets at rest: Fernet encryption with a rotating key set, and HMAC blind indexes.

Keys come from ``settings.VPNADMIN_ENCRYPTION_KEYS`` (newest first; see
``vpnadmin.env.persistent_encryption_keys``). New values are encrypted with the newest
key; any key of the set decrypts (``MultiFernet``), so a new key can be put first and
``manage.py rotatekeys`` re-encrypts every row while the panel serves.

A Fernet token is random each time, so equality and uniqueness cannot use the
ciphertext: they use a *blind index*, an HMAC-SHA256 of the normalised value under a key
derived from the newest Fernet key. Lookups try the index under every key in the set
(one or two, mid-rotation); ``rotatekeys`` rewrites indexes with the newest key.

How to use it in a model (data-plane engineer: VpnServer.wg_private_key is this)::

    from vpnadmin.crypto import EncryptedTextField

    wg_private_key = EncryptedTextField("WireGuard private key", blank=True, editable=False)

The attribute reads and writes plaintext; the column holds only the token. "" and None
are stored as they are (nothing to hide). Filtering on the field by value is refused
with a clear error (a token never equals another): look values up by a blind-index
column instead (``blind_index("purpose", value)`` / ``blind_index_candidates``).
Writers that bypass the ORM (COPY, temp tables, raw UPDATE) must call ``encrypt()``
themselves before the value leaves Python; ``rotatekeys`` knows the encrypted columns
through ``ENCRYPTED_COLUMNS`` below: add a new one there.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import FieldError
from django.core.signals import setting_changed
from django.db import models
from django.db.models.lookups import Exact, IsNull
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


@dataclass(frozen=True)
class EncryptedColumn:
    """One encrypted column, for rotatekeys and the data migrations; `index` its blind index, if any."""

    table: str
    column: str
    index: str = ""
    purpose: str = ""


# Every encrypted column (rotatekeys walks them all): add a new one here.
ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn("users_vpnuser", "credential_uuid", "credential_uuid_index", "users.vpnuser.credential_uuid"),
    EncryptedColumn("users_vpnuser", "credential_password"),
    EncryptedColumn("users_vpnuser", "wg_private_key"),
    EncryptedColumn("containers_vpnserver", "environment"),
    EncryptedColumn("containers_vpnserver", "wg_private_key"),
)
# Fernet tokens are base64 of a version byte 0x80 and a timestamp: they all start so.
TOKEN_PREFIX = "gAAAAA"  # noqa: S105 - a format marker, not a secret


class DecryptionError(Exception):
    """A stored secret that no key of the configured set can open (a key was dropped too early)."""


@dataclass(frozen=True)
class KeyRing:
    fernet: MultiFernet
    newest: Fernet
    index_keys: tuple[bytes, ...]
    fingerprints: tuple[str, ...]
    source: str

    def describe(self) -> str:
        """Names the key set without revealing it: a short hash of each key, and where it came from."""
        return f"the key set [{', '.join(self.fingerprints)}] from {self.source}"


def _index_key(key: str) -> bytes:
    # A separate key for the blind index: the Fernet key itself is never used for two jobs.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vpnadmin blind index").derive(
        key.encode("ascii")
    )


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()[:8]


@functools.lru_cache(maxsize=4)
def _build(keys: tuple[str, ...], source: str) -> KeyRing:
    fernets = [Fernet(key) for key in keys]
    return KeyRing(
        fernet=MultiFernet(fernets),
        newest=fernets[0],
        index_keys=tuple(_index_key(key) for key in keys),
        fingerprints=tuple(fingerprint(key) for key in keys),
        source=source,
    )


def keyring() -> KeyRing:
    keys = tuple(settings.VPNADMIN_ENCRYPTION_KEYS)
    return _build(keys, getattr(settings, "VPNADMIN_ENCRYPTION_KEYS_SOURCE", "VPNADMIN_ENCRYPTION_KEYS"))


def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("VPNADMIN_ENCRYPTION_KEYS"):
        _build.cache_clear()


setting_changed.connect(_clear_cache)


def encrypt(plaintext: str) -> str:
    return keyring().newest.encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str) -> str:
    ring = keyring()
    try:
        return ring.fernet.decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise DecryptionError(
            f"A stored secret cannot be decrypted with {ring.describe()}. It was encrypted with a key that is no "
            "longer in the set: put that key back (after the newest) and run `manage.py rotatekeys` before removing it."
        ) from None


def reencrypt(token: str) -> str:
    """The same secret under the newest key (MultiFernet.rotate), for rotatekeys."""
    ring = keyring()
    try:
        return ring.fernet.rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise DecryptionError(f"A stored secret cannot be decrypted with {ring.describe()}.") from None


def _mac(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()


def blind_index(purpose: str, value: str) -> str:
    """The index of `value` under the newest key; `purpose` keeps columns' indexes apart."""
    return _mac(keyring().index_keys[0], purpose, value)


def blind_index_candidates(purpose: str, value: str) -> list[str]:
    """The index under every key in the set: what a lookup matches mid-rotation."""
    return [_mac(key, purpose, value) for key in keyring().index_keys]


class DecryptionErrorMiddleware:
    """A secret no key of the set opens is a clear 503 naming the key set, never a 500 page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DecryptionError):
            return None
        # Staff get the key set and the way out; anyone else (a subscription client) only
        # learns that the service is unavailable.
        user = getattr(request, "user", None)
        staff = bool(user is not None and user.is_authenticated and user.is_staff)
        message = str(exception) if staff else "Stored secrets cannot be read right now. Try again later."
        response = TemplateResponse(request, "vpnadmin/key_error.html", {"message": message}, status=503)
        response.render()
        return response


# --- fields --------------------------------------------------------------------------


class _EmptyOnlyExact(Exact):
    """`field=""` (is it empty?) works; `field="secret"` would silently match nothing: refuse it."""

    def get_prep_lookup(self) -> Any:
        if self.rhs not in ("", None):
            raise FieldError(
                f"{self.lhs.target.name} is encrypted: look it up through its blind-index column, not by value"
            )
        return super().get_prep_lookup()


class EncryptedTextField(models.TextField):
    """A text column holding only a Fernet token; the attribute is plaintext."""

    description = "Text encrypted at rest (Fernet)"

    def _to_plain(self, value: Any) -> Any:
        return value

    def _from_plain(self, value: Any) -> str:
        return str(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        return self._to_plain(decrypt(value))

    def get_prep_value(self, value: Any) -> Any:
        if value is None or value == "":
            return value
        return encrypt(self._from_plain(value))

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "exact":
            return _EmptyOnlyExact
        if lookup_name == "isnull":
            return IsNull
        return None


class EncryptedUUIDField(EncryptedTextField):
    """A UUID encrypted at rest; reads back as `uuid.UUID`."""

    def _to_plain(self, value: Any) -> Any:
        return uuid.UUID(value)

    def _from_plain(self, value: Any) -> str:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))

    def to_python(self, value: Any) -> Any:
        if value is None or value == "" or isinstance(value, uuid.UUID):
            return value or None
        return uuid.UUID(str(value))


class EncryptedJSONField(EncryptedTextField):
    """A JSON value (a dict of environment values) encrypted as one token; reads back decoded."""

    # What django-stubs types the attribute as: a dict in, a dict out. The stubs' TextField
    # pins text, and these class-level hints are how its plugin reads a field's types.
    _pyi_private_set_type: dict[str, Any]  # type: ignore[assignment]
    _pyi_private_get_type: dict[str, Any]  # type: ignore[assignment]

    def _to_plain(self, value: Any) -> Any:
        return json.loads(value)

    def _from_plain(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return value
        # An empty dict is still encrypted: the column never holds JSON in the clear.
        return encrypt(self._from_plain(value))

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value else {}
        return value


# --- whole columns: the data migrations and rotatekeys ---------------------------------


def rewrite_column(
    connection: Any,
    target: EncryptedColumn,
    transform: Callable[[str], str],
    *,
    only: str = "",
    batch_size: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Give every non-empty value of `target` a new stored form, in short batches by primary key.

    Each batch is its own transaction and writes a row only if it still holds the value
    read (`AND col = old`): a request that rewrote the row meanwhile wrote it under the
    newest key already, so the batch leaves it alone and the panel keeps serving. The
    blind index, if any, is recomputed from the plaintext under the newest key.
    `only` is an extra SQL condition (the migration: rows not yet encrypted).
    Returns the number of rows rewritten.
    """
    from django.db import transaction

    table, column = connection.ops.quote_name(target.table), connection.ops.quote_name(target.column)
    condition = f"{column} IS NOT NULL AND {column} <> ''" + (f" AND ({only})" if only else "")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE {condition}")  # noqa: S608 - names from ENCRYPTED_COLUMNS  # nosec B608
        total = cursor.fetchone()[0]
    done = rewritten = 0
    last_id = 0
    index_set = f", {connection.ops.quote_name(target.index)} = v.idx" if target.index else ""
    while True:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, {column}::text FROM {table} WHERE id > %s AND {condition} ORDER BY id LIMIT %s",  # noqa: S608  # nosec B608
                [last_id, batch_size],
            )
            rows = cursor.fetchall()
            if not rows:
                break
            last_id = rows[-1][0]
            values = []
            for pk, old in rows:
                new = transform(old)
                index = _mac(keyring().index_keys[0], target.purpose, decrypt(new)) if target.index else None
                values.append((pk, old, new, index))
            cursor.execute(
                f"UPDATE {table} AS t SET {column} = v.new{index_set} "  # noqa: S608  # nosec B608
                f"FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS v(id, old, new, idx) "
                f"WHERE t.id = v.id AND t.{column}::text = v.old",
                [[v[0] for v in values], [v[1] for v in values], [v[2] for v in values], [v[3] for v in values]],
            )
            rewritten += cursor.rowcount
        done += len(rows)
        if progress:
            progress(f"{target.table}.{target.column}: {done:,} of {total:,} rows")
    return rewritten


def encrypt_plaintext(value: str) -> str:
    """For the data migrations: a value stored before encryption gets encrypted; a token stays."""
    return value if value.startswith(TOKEN_PREFIX) else encrypt(value)


def decrypt_token(value: str) -> str:
    """For the migrations' reverse: back to plaintext."""
    return decrypt(value) if value.startswith(TOKEN_PREFIX) else value


def secrets_rotate(*, batch_size: int = 1000, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Re-encrypt every stored secret under the newest key and recompute blind indexes.

    Runs beside the panel: batches are short transactions and readers decrypt old and
    new tokens alike while both keys are in the set. Records one audit entry at the end.
    Returns rows rewritten per column.
    """
    from django.db import connection, transaction

    from vpnadmin.audit import audit_record

    counts = {}
    for target in ENCRYPTED_COLUMNS:
        counts[f"{target.table}.{target.column}"] = rewrite_column(
            connection, target, reencrypt, batch_size=batch_size, progress=progress
        )
    with transaction.atomic():
        audit_record(
            actor=None,
            action="secrets_rotate",
            target="vpnadmin.crypto",
            count=sum(counts.values()),
            detail={"newest_key": keyring().fingerprints[0], "rows": counts},
        )
    return counts


# --- many tokens at once: the data plane's read of a server's users ---------------------


class PlaintextCache:
    """A bounded, thread-safe LRU of token -> plaintext, for one process.

    A Fernet token is random per encryption, so a token names one stored value: a user
    whose credential changes gets a new token (a miss), and a rotation re-encrypts every
    row (all misses, then the old entries age out). The cache belongs to one key set: when
    the set changes (a key dropped), it empties itself, so nothing a dropped key protected
    is served from memory. It lives only in the process that made it (never the database,
    the cache server or a log).
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._ring: KeyRing | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _take(self, ring: KeyRing, tokens: Sequence[str]) -> list[str | None]:
        with self._lock:
            if self._ring is not ring:
                self._entries.clear()
                self._ring = ring
            found: list[str | None] = []
            for token in tokens:
                value = self._entries.get(token)
                if value is not None:
                    self._entries.move_to_end(token)
                found.append(value)
            return found

    def _put(self, ring: KeyRing, pairs: list[tuple[str, str]]) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            if self._ring is not ring:
                return
            for token, value in pairs[-self.max_entries :]:
                self._entries[token] = value
                self._entries.move_to_end(token)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def decrypt_many(tokens: Sequence[str], *, cache: PlaintextCache | None = None) -> list[str]:
    """`decrypt` of every token, in order, as one pass ("" stays "").

    With a cache, tokens it holds cost nothing (a server re-applied after one user
    changed opens one token, not all of them). Raises DecryptionError like `decrypt`.
    """
    ring = keyring()
    found: list[str | None] = cache._take(ring, tokens) if cache is not None else [None] * len(tokens)
    missing = [i for i, value in enumerate(found) if value is None and tokens[i]]
    if cache is not None:
        cache.hits += sum(value is not None for value in found)
        cache.misses += len(missing)
    if missing:
        # Each token through MultiFernet itself: a hand-made CBC/HMAC path was ~3x faster
        # on a cold 10,000-user apply, but the cache makes cold applies rare and a panel
        # holding every user's keys keeps its cryptography in the library made for it.
        fresh: list[tuple[str, str]] = []
        for i in missing:
            found[i] = decrypt(tokens[i])
            fresh.append((tokens[i], found[i] or ""))
        if cache is not None:
            cache._put(ring, fresh)
    return [value or "" for value in found]
