"""Component checks behind the dashboard and /healthz.

Every check runs in its own thread with its own timeout, and the caller waits for all of
them at most HEALTH_CHECK_TIMEOUT seconds: a hanging part is reported as timed out, it
never holds the page or the health endpoint past that deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, connections

from containers.engine import EngineAddress, describe_engine_error, ping_address
from containers.selectors import engine_endpoints

logger = logging.getLogger(__name__)

# Threads outlive a hung check; a small fixed pool keeps a persistent hang from
# spawning a thread per request. Its threads keep their database connection between
# checks (CONN_MAX_AGE applies), which keeps a check to one round trip.
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
    return _executor


_thread_connections: set[Any] = set()


def shutdown_check_threads() -> None:
    """End the check threads and close their database connections (tests, shutdown)."""
    global _executor
    if _executor is not None:
        _executor.shutdown(wait=True, cancel_futures=True)
        _executor = None
    while _thread_connections:
        wrapper = _thread_connections.pop()
        wrapper.inc_thread_sharing()  # closing from this thread, the owner has ended
        wrapper.close()


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


def _timed(name: str, kind: str, required: bool, probe: Callable[[], str]) -> ComponentCheck:
    started = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # every failure of a part is a state, not an error page
        detail = describe_engine_error(exc) if kind == "docker" else _short_error(exc)
        return ComponentCheck(name, kind, False, required, None, detail)
    latency = (time.perf_counter() - started) * 1000
    return ComponentCheck(name, kind, True, required, round(latency, 2), detail)


def _short_error(exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}"[:200]


def _probe_database() -> str:
    # A pool thread keeps its connection between checks; drop it when it is broken
    # (a restarted server) or older than CONN_MAX_AGE.
    connection.close_if_unusable_or_obsolete()
    _thread_connections.add(connections["default"])
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET statement_timeout = 1000")
                cursor.execute("SELECT current_setting('server_version')")
                return f"PostgreSQL {cursor.fetchone()[0]}"
            cursor.execute("SELECT sqlite_version()")
            return f"SQLite {cursor.fetchone()[0]}"
    except Exception:
        connection.close()
        raise


def _probe_cache() -> str:
    backend = settings.CACHES["default"]["BACKEND"]
    if hasattr(cache, "client") and hasattr(cache.client, "get_client"):
        # django-redis swallows errors with IGNORE_EXCEPTIONS: ask the raw client.
        client = cache.client.get_client(write=False)
        client.ping()
        return "Redis " + str(client.info("server").get("redis_version", ""))
    probe_key = "health:probe"
    cache.set(probe_key, "1", 10)
    if cache.get(probe_key) != "1":
        raise RuntimeError("cache did not return what was written")
    return backend.rsplit(".", 1)[-1]


class MemoryLeakOpen(Exception):
    """A critical memory leak finding is open on a process still being measured."""


# Findings change at most once per sampling interval (30 s by default), so the verdict
# is kept a few seconds under the "memory" tag that finding writes invalidate: the
# dashboard and /healthz then pay one cache read instead of an ORM query per request.
MEMORY_VERDICT_KEY = "health:memory-verdict"
MEMORY_VERDICT_SECONDS = 10


def _memory_verdict() -> dict[str, Any]:
    from perf.memory_selectors import open_findings
    from perf.memory_services import stale_before
    from perf.profiler import ProfilerConfig

    _thread_connections.add(connections["default"])
    connection.close_if_unusable_or_obsolete()
    findings = open_findings(stale_before=stale_before(ProfilerConfig.from_settings()))
    critical = [f for f in findings if f.severity == "critical"]
    worst = critical[0] if critical else None
    return {
        "open": len(findings),
        "critical": len(critical),
        "worst_pid": worst.process.pid if worst else None,
        "worst_slope": worst.slope_mb_per_hour if worst else None,
    }


def _probe_memory() -> str:
    from django.db import DatabaseError

    try:
        verdict = cache.get_or_set(MEMORY_VERDICT_KEY, _memory_verdict, MEMORY_VERDICT_SECONDS, tags=["memory"])
    except DatabaseError:
        # The database check reports the outage; the memory check has nothing to add.
        connection.close()
        return "not checked: the snapshot store (database) does not answer"
    if verdict["critical"]:
        raise MemoryLeakOpen(
            f"critical leak open in {verdict['critical']} process(es): pid {verdict['worst_pid']} grows "
            f"{verdict['worst_slope']:,.0f} MB/h (see /perf/memory/)"
        )
    if verdict["open"]:
        return f"{verdict['open']} open finding(s), none critical"
    return "no open leak findings"


def _checks_to_run() -> list[tuple[str, str, bool, Callable[[], str]]]:
    checks: list[tuple[str, str, bool, Callable[[], str]]] = [
        ("database", "database", True, _probe_database),
        ("cache", "cache", True, _probe_cache),
        # A critical leak degrades the service; the workers still answer.
        ("memory", "memory", False, _probe_memory),
    ]
    for endpoint in engine_endpoints():
        address = endpoint.address

        def probe(address: EngineAddress = address) -> str:
            return "Docker " + ping_address(address, timeout=settings.HEALTH_CHECK_TIMEOUT)

        # An engine being down degrades the service; it does not make the app unhealthy.
        checks.append((f"docker:{endpoint.name}", "docker", False, probe))
    return checks


def run_component_checks(timeout: float | None = None) -> list[ComponentCheck]:
    """Run every check concurrently and return them all within `timeout` seconds."""
    deadline = settings.HEALTH_CHECK_TIMEOUT if timeout is None else timeout
    specs = _checks_to_run()
    futures = [_pool().submit(_timed, *spec) for spec in specs]
    wait(futures, timeout=deadline)
    results = []
    for (name, kind, required, _probe), future in zip(specs, futures, strict=True):
        if future.done():
            results.append(future.result())
        else:
            results.append(ComponentCheck(name, kind, False, required, None, f"no answer within {deadline:g} s"))
    return results


def overall_status(checks: list[ComponentCheck]) -> str:
    if any(not check.ok and check.required for check in checks):
        return "down"
    if any(not check.ok for check in checks):
        return "degraded"
    return "ok"
