"""Bearer tokens read from a file that may change while the panel serves.

METRICS_TOKEN_FILE (a mounted secret, a file written by the operator) is read again when
its modification time or size changes, so rotating the token is writing the file: no
restart, and every worker sees the new token on its next request.
"""

from __future__ import annotations

import os
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_lock = threading.Lock()
_cached: dict[str, tuple[tuple[int, int], str]] = {}


def _read(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError as exc:
        message = f"METRICS_TOKEN_FILE points at {path!r}, which cannot be read: {exc.strerror}"
        raise ImproperlyConfigured(message) from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        kept = _cached.get(path)
        if kept is not None and kept[0] == stamp:
            return kept[1]
    with open(path, encoding="utf-8") as handle:
        token = handle.read().strip()
    with _lock:
        _cached[path] = (stamp, token)
    return token


def metrics_token() -> str:
    """The /metrics bearer token now: from METRICS_TOKEN_FILE when set, else METRICS_TOKEN."""
    path = settings.METRICS_TOKEN_FILE
    if path:
        return _read(path)
    return str(settings.METRICS_TOKEN or "")
