"""Turning an exception into the one line a page, a log entry or a job record shows."""

from __future__ import annotations


def first_line(exc: BaseException, *, limit: int = 200) -> str:
    """`Type: first line of the message`, cut to `limit` characters.

    Tracebacks and multi-line driver messages (psycopg, Redis, Docker) put the cause on
    the first line and context below it; a status cell has room for the cause only.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {line}"[:limit] if line else type(exc).__name__[:limit]
