"""Keep subscription tokens out of logs: a token in a log line is a working URL.

`redact` replaces whatever follows `/sub/` in a text; the log filter applies it to every
record the app logs (Django's "Not Found: /sub/…" and "Bad Request: /sub/…" lines
included), the gunicorn logger to the access log's request line, path and referer.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]  # gunicorn ships no type information

_TOKEN_IN_PATH = re.compile(r"(/sub/)[^\s/?#\"']+")
REDACTED = r"\1[redacted]"


def redact(text: str) -> str:
    return _TOKEN_IN_PATH.sub(REDACTED, text)


class RedactSubscriptionTokens(logging.Filter):
    """A handler filter: the formatted message and its arguments lose their tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "/sub/" in str(record.msg) or any("/sub/" in str(arg) for arg in _args(record)):
            record.msg = redact(record.getMessage())
            record.args = None
        return True


def _args(record: logging.LogRecord) -> tuple[Any, ...]:
    args = record.args
    if isinstance(args, tuple):
        return args
    return (args,) if args else ()


class RedactingGunicornLogger(Logger):
    """gunicorn's logger with `/sub/<token>` redacted from access log lines."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "f", "{referer}i"):
            value = atoms.get(key)
            if isinstance(value, str) and "/sub/" in value:
                atoms[key] = redact(value)
        return atoms
