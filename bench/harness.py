"""The benchmark harness: timing, rows, the gunicorn server suites measure against.

A row is one figure beside its baseline, both measured in this run, as medians of
several rounds; `ratio` is ours / baseline and `target` bounds that ratio:
"<= 1.3" (ours may cost at most 1.3x the baseline) or ">= 2" (ours is at least 2x).
For "N times faster than X" write the ratio bound: 20x faster is "<= 0.05".
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "var" / "bench"


@dataclass
class Row:
    name: str
    ours_s: float
    baseline: str
    baseline_s: float
    ratio: float
    target: str
    ok: bool

    @classmethod
    def compare(cls, name: str, ours_s: float, baseline: str, baseline_s: float, target: str) -> Row:
        ratio = ours_s / baseline_s if baseline_s > 0 else float("inf")
        return cls(
            name, round(ours_s, 6), baseline, round(baseline_s, 6), round(ratio, 4), target, meets(ratio, target)
        )


def meets(ratio: float, target: str) -> bool:
    op, _, bound = target.strip().partition(" ")
    value = float(bound)
    if op == "<=":
        return ratio <= value
    if op == ">=":
        return ratio >= value
    raise ValueError(f"target must be '<= N' or '>= N', got {target!r}")


def median_seconds(fn: Callable[[], Any], *, rounds: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn` over `rounds` runs after `warmup` unmeasured ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def interleaved_medians(fns: dict[str, Callable[[], Any]], *, rounds: int = 7, warmup: int = 1) -> dict[str, float]:
    """Medians of several functions measured in alternation, so machine noise hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def ensure_database(name: str) -> None:
    """Create the PostgreSQL database `name` on the local server unless it exists."""
    exists = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{name}'"],  # noqa: S608 - our own constant names  # nosec B608
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f"CREATE DATABASE {name}"], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def gunicorn(
    app: str = "vpnadmin.wsgi:application", *, workers: int = 1, threads: int = 4, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """A gunicorn server on a free loopback port, stopped on exit."""
    port = free_port()
    full_env = {
        **os.environ,
        "BIND": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "GUNICORN_ACCESSLOG": "",
        "GUNICORN_MAX_REQUESTS": "0",
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "vpnadmin/gunicorn.conf.py", app],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"gunicorn did not start: {process.stderr.read().decode()[-2000:] if process.stderr else ''}"
                ) from None
            time.sleep(0.1)
    try:
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def http_get(url: str, *, cookies: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - loopback only
    if cookies:
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only  # nosec B310
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
        return response.read()


def login_session_cookie(username: str = "bench-admin") -> dict[str, str]:
    """A session cookie for a superuser in the bench database, without going through a form."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


def print_rows(suite: str, rows: list[Row]) -> None:
    print(f"\n== {suite}")
    header = f"{'name':58} {'ours':>11} {'baseline':>11} {'ratio':>8} {'target':>8}  ok"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name[:58]:58} {row.ours_s * 1000:9.2f}ms {row.baseline_s * 1000:9.2f}ms "
            f"{row.ratio:8.3f} {row.target:>8}  {'yes' if row.ok else 'NO'}"
        )
        print(f"    baseline: {row.baseline}")


def write_rows(suite: str, rows: list[Row]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{suite}.json"
    path.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
    return path
