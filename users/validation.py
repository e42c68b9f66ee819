"""Turning raw values (CSV cells, form fields, Python values) into clean user fields.

Each cleaner takes whatever came in and returns the typed value or raises
`ValueError` with a message meant for the operator. The services use them for every
row, so the pages, the admin, the commands and the CSV import refuse the same things.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from users.models import MAX_BYTES, MAX_NOTE_LENGTH, MAX_ON_HOLD_DAYS, USERNAME_RE, Protocol, ResetStrategy

_USERNAME = re.compile(USERNAME_RE)
_SIZE = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([kmgtp]i?b|b)?$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}
# Enum .values builds a list per call; these run once per row of a million-row import.
PROTOCOLS = frozenset(Protocol.values)
RESET_STRATEGIES = frozenset(ResetStrategy.values)
_TRUE = {"1", "true", "yes", "y", "on", "active"}
_FALSE = {"0", "false", "no", "n", "off", "disabled"}
EARLIEST_EXPIRY = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
LATEST_EXPIRY = datetime.datetime(2200, 1, 1, tzinfo=datetime.UTC)
# The largest key PostgreSQL's bigint holds: a larger "id" is a forged one, refused
# before it reaches a query (where it would be a DataError, i.e. a 500).
MAX_ID = 2**63 - 1


def _text(value: Any) -> str:
    text = "" if value is None else str(value)
    if "\x00" in text:
        raise ValueError("contains a null byte")
    return text.strip()


def clean_username(value: Any) -> str:
    text = _text(value).lower()
    if not text:
        raise ValueError("is required")
    if not _USERNAME.match(text):
        raise ValueError("must be 3 to 32 characters of a-z, 0-9, underscore, dot or hyphen")
    return text


def clean_email(value: Any) -> str:
    text = _text(value)
    if not text:
        return ""
    if len(text) > 254:
        raise ValueError("is longer than 254 characters")
    try:
        validate_email(text)
    except ValidationError:
        raise ValueError("is not a valid e-mail address") from None
    return text


def clean_protocol(value: Any) -> str:
    text = _text(value).lower()
    if not text:
        raise ValueError("is required (vless, shadowsocks or wireguard)")
    if text not in PROTOCOLS:
        raise ValueError(f"must be one of {', '.join(Protocol.values)}")
    return text


def clean_bytes(value: Any, *, allow_none: bool) -> int | None:
    """Bytes as an integer, or a size such as '10 GB' / '1.5GiB'. Empty means unlimited."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if allow_none:
            return None
        raise ValueError("is required")
    if isinstance(value, bool):
        raise ValueError("must be a number of bytes")
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE.match(_text(value).replace(",", "").replace("_", ""))
        if not match:
            raise ValueError("must be a number of bytes or a size such as 10GB")
        try:
            amount = Decimal(match.group(1))
        except InvalidOperation:
            raise ValueError("must be a number of bytes or a size such as 10GB") from None
        number = int(amount * _UNITS[(match.group(2) or "b").lower()])
    if number < 0:
        raise ValueError("cannot be negative")
    if number > MAX_BYTES:
        raise ValueError("is larger than 1 PiB")
    return number


def clean_limit(value: Any) -> int | None:
    return clean_bytes(value, allow_none=True)


def clean_used(value: Any) -> int:
    result = clean_bytes(value if value not in (None, "") else 0, allow_none=False)
    assert result is not None
    return result


def clean_reset_strategy(value: Any) -> str:
    text = _text(value).lower() or ResetStrategy.NONE
    if text not in RESET_STRATEGIES:
        raise ValueError(f"must be one of {', '.join(ResetStrategy.values)}")
    return text


def clean_expire_at(value: Any) -> datetime.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime.combine(value, datetime.time.min)
    else:
        text = _text(value)
        if not text:
            return None
        parsed: datetime.datetime | None
        try:
            parsed = parse_datetime(text)
            if parsed is None:
                day = parse_date(text)
                parsed = datetime.datetime.combine(day, datetime.time.min) if day else None
        except ValueError:
            parsed = None
        if parsed is None:
            raise ValueError("must be a date (YYYY-MM-DD) or an ISO date and time")
        moment = parsed
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, datetime.UTC)
    if not EARLIEST_EXPIRY <= moment < LATEST_EXPIRY:
        raise ValueError("must be between the years 2000 and 2199")
    return moment


def clean_on_hold_days(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("must be a whole number of days")
    try:
        days = int(value) if isinstance(value, int) else int(_text(value))
    except ValueError:
        raise ValueError("must be a whole number of days") from None
    if not 1 <= days <= MAX_ON_HOLD_DAYS:
        raise ValueError(f"must be between 1 and {MAX_ON_HOLD_DAYS} days")
    return days


def clean_is_active(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return True
    text = _text(value).lower()
    if not text:
        return True
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false")


def clean_note(value: Any) -> str:
    text = _text(value)
    if len(text) > MAX_NOTE_LENGTH:
        raise ValueError(f"is longer than {MAX_NOTE_LENGTH} characters")
    return text


def clean_optional_moment(value: Any) -> datetime.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, datetime.UTC)
    moment = parse_datetime(_text(value))
    if moment is None:
        raise ValueError("must be an ISO date and time")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, datetime.UTC)


def clean_server_id(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError("must be a server id") from None
    if not 1 <= number <= MAX_ID:
        raise ValueError("must be a server id")
    return number


# Field name -> cleaner. The services accept exactly these keys.
CLEANERS: dict[str, Callable[[Any], Any]] = {
    "username": clean_username,
    "email": clean_email,
    "protocol": clean_protocol,
    "data_limit": clean_limit,
    "used_traffic": clean_used,
    "reset_strategy": clean_reset_strategy,
    "expire_at": clean_expire_at,
    "on_hold_days": clean_on_hold_days,
    "is_active": clean_is_active,
    "note": clean_note,
    "last_online_at": clean_optional_moment,
    "server_id": clean_server_id,
}
