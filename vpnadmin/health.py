"""Component checks behind the dashboard and /healthz; each app registers its own.

An app contributes checks in its `AppConfig.ready()`:

    health.register("cache", probe, required=True)          # one fixed check
    health.register_group("docker", expand)                 # checks known only at run time

A probe returns a one-line detail or raises. Every check runs in its own thread and the
caller waits for all of them at most HEALTH_CHECK_TIMEOUT seconds: a hanging part is
reported as timed out, it never holds the page or the endpoint past that deadline.
Each check has at most one probe in flight (callers arriving meanwhile wait for the same
one, nothing queues behind it), and a check registered with `ttl` keeps its last answer
that long, so a flood of /healthz costs a Docker engine one ping per period.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections

from vpnadmin.errors import first_line

logger = logging.getLogger(__name__)

Probe = Callable[[], str]
T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    name: str
    probe: Probe
    required: bool
    kind: str
    ttl: float = 0.0
    # Two checks with one name but another key (an engine moved to a new address) do
    # not share a cached answer.
    key: str = ""
    describe_error: Callable[[BaseException], str] | None = None


@dataclass(frozen=True)
class ComponentCheck:
    name: str
    kind: str
    ok: bool
    required: bool
    latency_ms: float | None
    detail: str

    @property
    def state(self) -> str:
        return "up" if self.ok else "down"


_checks: dict[str, Check] = {}
_groups: dict[str, tuple[Callable[[], list[Check]], bool]] = {}


def register(
    name: str,
    probe: Probe,
    *,
    required: bool,
    kind: str | None = None,
    ttl: float = 0.0,
    describe_error: Callable[[BaseException], str] | None = None,
) -> None:
    """Add a check; `required` checks make the service "down", the others "degraded"."""
    _checks[name] = Check(name, probe, required, kind or name, ttl, "", describe_error)


def register_group(name: str, expand: Callable[[], list[Check]], *, required: bool = False) -> None:
    """Add checks that exist only at run time (one per Docker engine).

    `expand` may read the database; when it fails or hangs, the group is one failed check.
    """
    _groups[name] = (expand, required)


def unregister(name: str) -> None:
    _checks.pop(name, None)
    _groups.pop(name, None)


# --- single flight and the short-lived answers ----------------------------------------


@dataclass
class _Slot:
    future: Future[Any] | None = None
    answer: Any = None
    answered_at: float = 0.0


_slots: dict[tuple[str, str], _Slot] = {}
_slots_lock = threading.Lock()


def reset() -> None:
    """Forget every cached answer (tests; a new configuration)."""
    with _slots_lock:
        _slots.clear()


def _in_thread(fn: Callable[[], T], future: Future[T]) -> None:
    try:
        future.set_result(fn())
    except BaseException as exc:
        future.set_exception(exc)
    finally:
        # The thread ends here: its database connection must not outlive it.
        connections.close_all()


def _single_flight(key: tuple[str, str], fn: Callable[[], T], ttl: float) -> Future[T]:
    """The answer kept for `ttl`, the call in flight, or a new call in its own thread."""
    now = time.monotonic()
    with _slots_lock:
        slot = _slots.setdefault(key, _Slot())
        if slot.answer is not None and ttl > 0 and now - slot.answered_at < ttl:
            kept: Future[T] = Future()
            kept.set_result(slot.answer)
            return kept
        if slot.future is not None and not slot.future.done():
            return slot.future
        future: Future[T] = Future()
        slot.future = future

    def remember(done: Future[T]) -> None:
        if done.exception() is None:
            with _slots_lock:
                slot.answer, slot.answered_at = done.result(), time.monotonic()

    future.add_done_callback(remember)
    threading.Thread(target=_in_thread, args=(fn, future), name=f"health-{key[0]}", daemon=True).start()
    return future


def _short_error(exc: BaseException) -> str:
    return first_line(exc)


def _timed(check: Check) -> ComponentCheck:
    started = time.perf_counter()
    try:
        detail = check.probe()
    except Exception as exc:  # every failure of a part is a state, not an error page
        describe = check.describe_error or _short_error
        return ComponentCheck(check.name, check.kind, False, check.required, None, describe(exc))
    latency = (time.perf_counter() - started) * 1000
    return ComponentCheck(check.name, check.kind, True, check.required, round(latency, 2), detail)


def _start(check: Check) -> Future[ComponentCheck]:
    return _single_flight((check.name, check.key), lambda: _timed(check), check.ttl)


def _timed_out(name: str, kind: str, required: bool) -> ComponentCheck:
    return ComponentCheck(name, kind, False, required, None, f"no answer within {settings.HEALTH_CHECK_TIMEOUT:g} s")


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def _collect(check: Check, future: Future[ComponentCheck], deadline: float) -> ComponentCheck:
    try:
        return future.result(timeout=_remaining(deadline))
    except TimeoutError:
        return _timed_out(check.name, check.kind, check.required)


def run_component_checks(timeout: float | None = None) -> list[ComponentCheck]:
    """Run every registered check concurrently; all answers within `timeout` seconds.

    Groups list their checks in the calling thread (they read the database and must see
    what the caller sees), and only once the database check has answered: with the
    database down a listing would wait for the connect timeout, so the group is
    reported as not checked instead.
    """
    budget = settings.HEALTH_CHECK_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + budget
    fixed = [(check, _start(check)) for check in list(_checks.values())]
    answers = {check.name: _collect(check, future, deadline) for check, future in fixed if check.name == "database"}
    database_ok = "database" not in answers or answers["database"].ok
    unlisted: list[ComponentCheck] = []
    dynamic: list[tuple[Check, Future[ComponentCheck]]] = []
    for name, (expand, required) in list(_groups.items()):
        if not database_ok:
            detail = "not checked: the database does not answer"
            unlisted.append(ComponentCheck(name, name, False, required, None, detail))
            continue
        try:
            dynamic.extend((check, _start(check)) for check in expand())
        except Exception as exc:  # a listing that fails is this group's failure, not the page's
            unlisted.append(ComponentCheck(name, name, False, required, None, f"not checked: {_short_error(exc)}"))
    for check, future in fixed:
        if check.name not in answers:
            answers[check.name] = _collect(check, future, deadline)
    return [answers[check.name] for check, _ in fixed] + unlisted + [_collect(c, f, deadline) for c, f in dynamic]


def overall_status(checks: list[ComponentCheck]) -> str:
    if any(not check.ok and check.required for check in checks):
        return "down"
    if any(not check.ok for check in checks):
        return "degraded"
    return "ok"


# --- the project's own probes -----------------------------------------------------------


def probe_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 1000")
        cursor.execute("SELECT current_setting('server_version')")
        row = cursor.fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def probe_cache() -> str:
    # django-redis swallows errors with IGNORE_EXCEPTIONS: ask the raw client.
    client = cache.client.get_client(write=False)  # type: ignore[attr-defined]  # django-redis only
    client.ping()
    return "Redis " + str(client.info("server").get("redis_version", ""))
