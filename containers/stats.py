"""Turning the engine's raw stats into a small sample, and keeping samples in the cache.

Live panels read samples only from here (one get_many per panel), never from an engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.core.cache import cache
from django.template.defaultfilters import filesizeformat

from perf.cache import tagged_cache

SAMPLE_KEY = "containers:stats:{server_id}"
PANEL_KEY = "containers:stats:panel"
TOP_N = 10


def _sum_blkio(raw: dict[str, Any]) -> tuple[int, int]:
    entries = (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    read = sum(int(e.get("value", 0)) for e in entries if str(e.get("op", "")).lower() == "read")
    write = sum(int(e.get("value", 0)) for e in entries if str(e.get("op", "")).lower() == "write")
    return read, write


def sample_from_raw(raw: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """One sample: CPU % (from the engine's previous reading, or from our previous sample),
    memory against its limit, network and block I/O totals, pids."""
    cpu = raw.get("cpu_stats") or {}
    cpu_total = int((cpu.get("cpu_usage") or {}).get("total_usage") or 0)
    system = int(cpu.get("system_cpu_usage") or 0)
    online = int(cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1)
    pre = raw.get("precpu_stats") or {}
    if pre.get("system_cpu_usage"):
        pre_total, pre_system = int((pre.get("cpu_usage") or {}).get("total_usage") or 0), int(pre["system_cpu_usage"])
    elif previous:
        pre_total, pre_system = int(previous.get("cpu_total", 0)), int(previous.get("cpu_system", 0))
    else:
        pre_total, pre_system = 0, 0
    cpu_percent: float | None = None
    if pre_system and system > pre_system and cpu_total >= pre_total:
        cpu_percent = round((cpu_total - pre_total) / (system - pre_system) * online * 100, 2)

    memory = raw.get("memory_stats") or {}
    mem_stats = memory.get("stats") or {}
    # What `docker stats` shows: usage less the page cache that can be reclaimed.
    reclaimable = int(mem_stats.get("inactive_file") or mem_stats.get("total_inactive_file") or 0)
    mem_usage = max(int(memory.get("usage") or 0) - reclaimable, 0)
    mem_limit = int(memory.get("limit") or 0)
    networks = raw.get("networks") or {}
    block_read, block_write = _sum_blkio(raw)
    return {
        "cpu_percent": cpu_percent,
        "cpu_total": cpu_total,
        "cpu_system": system,
        "memory_bytes": mem_usage,
        "memory_limit": mem_limit,
        "memory_percent": round(mem_usage / mem_limit * 100, 2) if mem_limit else None,
        "net_rx": sum(int(n.get("rx_bytes", 0)) for n in networks.values()),
        "net_tx": sum(int(n.get("tx_bytes", 0)) for n in networks.values()),
        "block_read": block_read,
        "block_write": block_write,
        "pids": int((raw.get("pids_stats") or {}).get("current") or 0),
        "sampled_at": time.time(),
    }


def store_sample(*, server_id: int, host_id: int, sample: dict[str, Any], timeout: float) -> None:
    """Keep the latest sample of one server, tagged by host and server."""
    key = SAMPLE_KEY.format(server_id=server_id)
    tagged_cache().set(key, sample, timeout=timeout, tags=[f"host:{host_id}", f"server:{server_id}", "stats"])


def read_samples(server_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The latest samples of these servers, in one cache round trip."""
    keys = {SAMPLE_KEY.format(server_id=server_id): server_id for server_id in server_ids}
    if not keys:
        return {}
    found = cache.get_many(list(keys))
    return {keys[key]: value for key, value in found.items() if isinstance(value, dict)}


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def build_panel(
    entries: Iterable[tuple[int, str, int, str, dict[str, Any] | None]], *, top: int = TOP_N
) -> dict[str, Any]:
    """Totals per host and the busiest servers, from (server id, name, host id, host name, sample)."""
    hosts: dict[int, dict[str, Any]] = {}
    busiest: list[dict[str, Any]] = []
    running = sampled = 0
    for server_id, name, host_id, host_name, sample in entries:
        running += 1
        totals = hosts.setdefault(
            host_id,
            {
                "host_id": host_id,
                "name": host_name,
                "running": 0,
                "sampled": 0,
                "cpu_percent": 0.0,
                "memory_bytes": 0,
                "net_rx": 0,
                "net_tx": 0,
                "pids": 0,
            },
        )
        totals["running"] += 1
        if sample is None:
            continue
        sampled += 1
        totals["sampled"] += 1
        totals["cpu_percent"] += sample.get("cpu_percent") or 0.0
        for field in ("memory_bytes", "net_rx", "net_tx", "pids"):
            totals[field] += sample.get(field) or 0
        busiest.append({"id": server_id, "name": name, "host": host_name, **sample})
    busiest.sort(key=lambda s: (s.get("cpu_percent") or 0.0, s.get("memory_bytes") or 0), reverse=True)
    # Formatted here, once per pass, so a panel request renders plain strings.
    host_rows = [
        {
            "name": t["name"],
            "running": t["running"],
            "sampled": t["sampled"],
            "cpu": _percent(t["cpu_percent"]),
            "memory": filesizeformat(t["memory_bytes"]),
            "net_rx": filesizeformat(t["net_rx"]),
            "net_tx": filesizeformat(t["net_tx"]),
            "pids": t["pids"],
        }
        for t in sorted(hosts.values(), key=lambda h: h["name"])
    ]
    top_rows = [
        {
            "name": s["name"],
            "host": s["host"],
            "cpu": _percent(s.get("cpu_percent")),
            "memory": filesizeformat(s.get("memory_bytes") or 0),
            "memory_of_limit": _percent(s.get("memory_percent")),
            "block_io": f"{filesizeformat(s.get('block_read') or 0)} / {filesizeformat(s.get('block_write') or 0)}",
            "pids": s.get("pids") or 0,
        }
        for s in busiest[:top]
    ]
    return {
        "hosts": host_rows,
        "top": top_rows,
        "running": running,
        "sampled": sampled,
        "collected_at": time.time(),
    }


def store_panel(panel: dict[str, Any], *, timeout: float) -> None:
    """Keep the panel's summary: a panel request then costs one cache read, whatever the count."""
    tagged_cache().set(PANEL_KEY, panel, timeout=timeout, tags=["stats"])


def read_panel() -> dict[str, Any] | None:
    panel = cache.get(PANEL_KEY)
    return panel if isinstance(panel, dict) else None
