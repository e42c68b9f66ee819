"""perf's part of the component checks: open memory-leak findings (registered in PerfConfig.ready).

Findings change at most once per sampling interval (30 s by default), so the verdict is
kept a few seconds under the "memory" tag that finding writes invalidate: the dashboard
and /healthz then pay one cache read instead of an ORM query per request.
"""

from __future__ import annotations

from typing import Any, cast

from django.core.cache import cache
from django.db import DatabaseError, connection

MEMORY_VERDICT_KEY = "health:memory-verdict"
MEMORY_VERDICT_SECONDS = 10


class MemoryLeakOpen(Exception):
    """A critical memory leak finding is open on a process still being measured."""


def _memory_verdict() -> dict[str, Any]:
    from perf.memory.profiler import ProfilerConfig
    from perf.memory.selectors import open_findings
    from perf.memory.services import stale_before

    findings = open_findings(stale_before=stale_before(ProfilerConfig.from_settings()))
    critical = [f for f in findings if f.severity == "critical"]
    worst = critical[0] if critical else None
    return {
        "open": len(findings),
        "critical": len(critical),
        "worst_pid": worst.process.pid if worst else None,
        "worst_slope": worst.slope_mb_per_hour if worst else None,
    }


def probe_memory() -> str:
    try:
        verdict = cast(
            dict[str, Any],
            cache.get_or_set(  # type: ignore[call-arg]  # `tags` is the tagged cache's
                MEMORY_VERDICT_KEY, _memory_verdict, MEMORY_VERDICT_SECONDS, tags=["memory"]
            ),
        )
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
