"""Failure handling shared by every backend instance of one Redis: a breaker and a
rate-limited failure log."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from typing import Any

from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger("perf.cache")


class BreakerOpen(RedisConnectionError):
    """Raised instead of asking Redis while the breaker is open."""


class Breaker:
    """After a connection failure, skip Redis for `interval` seconds instead of waiting on it."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.open_until = 0.0
        self.last_failure = ""
        self.last_failure_at = 0.0

    def check(self) -> None:
        if self.open_until and time.monotonic() < self.open_until:
            raise ConnectionInterrupted(connection=None) from BreakerOpen(
                f"Redis failed {time.monotonic() - self.last_failure_at:.1f} s ago ({self.last_failure}); "
                f"retrying after {self.interval:g} s"
            )

    def trip(self, error: BaseException) -> None:
        self.last_failure = f"{type(error).__name__}: {str(error)[:160]}"
        self.last_failure_at = time.monotonic()
        self.open_until = self.last_failure_at + self.interval

    def reset(self) -> None:
        self.open_until = 0.0

    @property
    def is_open(self) -> bool:
        return bool(self.open_until) and time.monotonic() < self.open_until


class FailureReporter:
    """Stands in for django-redis's logger of ignored errors when an option asks for more.

    django-redis calls `logger.exception("Exception ignored")` for every error it ignores
    (IGNORE_EXCEPTIONS) when DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS is on. This reporter:

    - trips the breaker (RETRY_INTERVAL) on connection errors and timeouts, not on server
      replies such as OOM, which say Redis is up;
    - with FAILURE_LOG_INTERVAL, logs one warning per interval with a count of the ones
      it held back, instead of a traceback per call;
    - otherwise passes the call on to django-redis's own logger, or drops it when that
      logging is off: exactly what django-redis would have done.
    """

    def __init__(self, breaker: Breaker | None, interval: float | None, passthrough: logging.Logger | None) -> None:
        self._breaker = breaker
        self._interval = interval
        self._passthrough = passthrough
        self._lock = threading.Lock()
        self._last_logged = 0.0
        self._suppressed = 0

    def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        cause = error.__cause__ if isinstance(error, ConnectionInterrupted) and error.__cause__ else error
        connection_failure = isinstance(cause, (RedisConnectionError, RedisTimeoutError, socket.timeout, OSError))
        if (
            self._breaker is not None
            and cause is not None
            and connection_failure
            and not isinstance(cause, BreakerOpen)
        ):
            self._breaker.trip(cause)
        if self._interval is None:
            if self._passthrough is not None:
                self._passthrough.exception(message, *args, **kwargs)
            return
        now = time.monotonic()
        with self._lock:
            if self._last_logged and now - self._last_logged < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last_logged = now
        logger.warning(
            "cache unavailable, serving without it: %s: %s (%d more failure(s) since the last report; "
            "next report in %g s at most)",
            type(cause).__name__,
            str(cause)[:200],
            suppressed,
            self._interval,
        )
