"""The memory profiler: what the sampler costs a worker, and how well detection works.

- Throughput: two gunicorn servers (2 workers, 4 threads each) on vpnadmin_bench, one
  with the default sampler (MEMORY_SAMPLER=1, every 30 s) and one without
  (MEMORY_SAMPLER=0): blocks of 48 requests to the users list from 4 concurrent clients,
  alternating A-B-B-A between the servers for 12 rounds; the median seconds per request
  of each (the inverse of requests per second). The issue asks for requests per second
  with the sampler >= 0.95x without it, which is time per request <= 1/0.95 = 1.0526x.
  A second pair runs the sampler every second (30x the default) to show where its cost
  starts to show.
- One sample in a Django process (RSS + USS + gc + object counts by type) against the
  default interval: the share of a worker's time the sampler takes.
- Detection, on real processes (perf/memory/workloads.py served over HTTP): a
  worker leaking 100 KB per request (20 requests between snapshots, 0-4 MB of noise),
  snapshots until a finding of medium or worse, the worst of several trials, against the
  10-snapshot budget; and a flat worker with the same noise, 200 snapshots, every one of
  which must be free of findings. These rows hold counts, not seconds (the printed "ms"
  column shows count x 1000).
"""

from __future__ import annotations

import statistics
import time
import urllib.error
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import psutil

from bench.harness import Row, gunicorn, http_get, login_session_cookie, median_seconds
from perf.memory.leaks import SEVERITIES, detect
from perf.memory.profiler import MemoryProfiler, ProfilerConfig, Snapshot, external_snapshot
from perf.memory.workloads import workload

CLIENTS = 4
BLOCK = 48
ROUNDS = 12
LEAK_TRIALS = 5
SNAPSHOT_BUDGET = 10
FLAT_SNAPSHOTS = 200
REQUESTS_PER_SNAPSHOT = 20
AT_LEAST_MEDIUM = set(SEVERITIES[SEVERITIES.index("medium") :])


def _page(url: str, cookies: dict[str, str]) -> str:
    """The users list when it answers, otherwise the dashboard (said in the row name)."""
    try:
        http_get(url + "/users/", cookies=cookies)
        return "/users/"
    except (urllib.error.URLError, RuntimeError):
        return "/"


def _throughput_rows(cookies: dict[str, str]) -> list[Row]:
    return [
        *_throughput_pair(cookies, "default sampler on (30 s)", "30", "<= 1.0526"),
        *_throughput_pair(cookies, "sampler every 1 s (30x)", "1", "<= 1.10"),
    ]


def _throughput_pair(cookies: dict[str, str], label: str, interval: str, target: str) -> list[Row]:
    on_env = {"MEMORY_SAMPLER": "1", "MEMORY_SAMPLE_INTERVAL": interval}
    with gunicorn(workers=2, env=on_env) as on, gunicorn(workers=2, env={"MEMORY_SAMPLER": "0"}) as off:
        path = _page(on.url, cookies)

        with ThreadPoolExecutor(max_workers=CLIENTS) as clients:

            def block(url: str) -> float:
                """Seconds for BLOCK requests from CLIENTS concurrent clients: 1 / requests per second."""
                started = time.perf_counter()
                list(clients.map(lambda _: http_get(url + path, cookies=cookies), range(BLOCK)))
                return (time.perf_counter() - started) / BLOCK

            block(on.url), block(off.url)  # warm-up: connections, caches, first-request imports
            samples: dict[str, list[float]] = {"on": [], "off": []}
            # A-B-B-A: whichever side goes first in a round, the other goes first in the next,
            # so drift and the rest of the machine's load fall on both alike.
            for round_index in range(ROUNDS):
                order = [("on", on.url), ("off", off.url)]
                for name, url in order if round_index % 2 == 0 else order[::-1]:
                    samples[name].append(block(url))
        per = {name: statistics.median(values) for name, values in samples.items()}
    return [
        Row.compare(
            f"{path} time per request, {label}",
            per["on"],
            f"the same page, same gunicorn, MEMORY_SAMPLER=0 ({path}); rps >= 0.95x is time <= 1.0526x",
            per["off"],
            target,
        )
    ]


def _sample_cost_row() -> Row:
    profiler = MemoryProfiler(ProfilerConfig(types_every=1, uss_every=1))
    seconds = median_seconds(profiler.snapshot, rounds=15)
    interval = ProfilerConfig().interval_s
    return Row.compare(
        "one full sample (RSS+USS+gc+types) / default interval",
        seconds,
        f"the default interval, {interval:g} s",
        interval,
        "<= 0.001",
    )


def _snapshots_to_finding() -> int:
    config = ProfilerConfig(warmup_s=0)
    with workload("leak", "--leak-kb", "100", "--noise-mb", "4") as leaky:
        leaky.requests(40)  # past start-up growth, like a worker that has served a while
        proc = psutil.Process(leaky.pid)
        series: deque[Snapshot] = deque(maxlen=config.window)
        found = False
        for count in range(1, 3 * SNAPSHOT_BUDGET + 1):
            leaky.requests(REQUESTS_PER_SNAPSHOT)
            series.append(external_snapshot(proc))
            finding = detect(series, config, sticky=found)
            if finding is not None and finding.severity in AT_LEAST_MEDIUM:
                return count
            found = finding is not None
    return 3 * SNAPSHOT_BUDGET + 1


def _clean_flat_snapshots() -> int:
    config = ProfilerConfig(warmup_s=0)
    clean = 0
    with workload("flat", "--noise-mb", "4") as flat:
        flat.requests(40)
        proc = psutil.Process(flat.pid)
        series: deque[Snapshot] = deque(maxlen=config.window)
        found = False
        for _ in range(FLAT_SNAPSHOTS):
            flat.requests(REQUESTS_PER_SNAPSHOT)
            series.append(external_snapshot(proc))
            found = detect(series, config, sticky=found) is not None
            clean += not found
    return clean


def _detection_rows() -> list[Row]:
    needed = [_snapshots_to_finding() for _ in range(LEAK_TRIALS)]
    started = time.perf_counter()
    clean = _clean_flat_snapshots()
    flat_seconds = time.perf_counter() - started
    print(f"   snapshots to a medium+ finding per trial: {needed} (median {statistics.median(needed)})")
    print(f"   flat worker: {clean}/{FLAT_SNAPSHOTS} snapshots without a finding in {flat_seconds:.1f} s")
    return [
        Row.compare(
            f"leak 100KB/req: snapshots to >=medium (worst of {LEAK_TRIALS})",
            float(max(needed)),
            f"the budget: {SNAPSHOT_BUDGET} snapshots",
            float(SNAPSHOT_BUDGET),
            "<= 1",
        ),
        Row.compare(
            f"flat+noisy: snapshots without a finding, of {FLAT_SNAPSHOTS}",
            float(clean),
            f"all {FLAT_SNAPSHOTS} snapshots taken (0 false findings allowed)",
            float(FLAT_SNAPSHOTS),
            ">= 1",
        ),
    ]


def run() -> list[Row]:
    cookies = login_session_cookie()
    return [*_throughput_rows(cookies), _sample_cost_row(), *_detection_rows()]
