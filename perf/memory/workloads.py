"""Calibration workloads for the leak detector: real processes that leak, or only churn.

The detector's tests and its benchmark run them, and an operator can point
`profilememory` at one to see what a finding looks like (standard library only):

    python -m perf.memory.workloads leak --leak-kb 1024 --tick 0.05
    python -m perf.memory.workloads flat --noise-mb 8 --serve

`leak` keeps a steady amount per unit of work and churns some noise besides; `flat`
only churns: it holds a random amount for one unit of work and frees it, so RSS goes up
and down without a trend. A unit of work is a tick of a timer (`--tick SECONDS`) or an
HTTP request (`--serve`: prints the port on the first line, one GET = one request).
"""

from __future__ import annotations

import argparse
import mmap
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_kept: list[bytes] = []
_noise: list[object] = []
_lock = threading.Lock()


def work(mode: str, leak_kb: int, noise_mb: float) -> None:
    with _lock:
        if mode == "leak":
            # Filled bytes: pages are touched, so RSS grows (a zeroed buffer would not).
            _kept.append(b"L" * (leak_kb * 1024))
        for old in _noise:
            if isinstance(old, mmap.mmap):
                old.close()
        _noise.clear()
        # A mapping of random size, written so its pages are resident and unmapped at the
        # next unit (glibc's malloc would keep a freed buffer and ratchet RSS up instead),
        # and many small objects (pymalloc arenas): RSS goes up and down, no trend.
        size = int(random.uniform(0, noise_mb) * 1024 * 1024) // mmap.PAGESIZE * mmap.PAGESIZE
        if size:
            buffer = mmap.mmap(-1, size)
            buffer.write(b"N" * size)
            _noise.append(buffer)
        _noise.extend(str(i) * 8 for i in range(random.randint(0, 20000)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["leak", "flat"])
    parser.add_argument("--leak-kb", type=int, default=1024)
    parser.add_argument("--noise-mb", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=None)
    driver = parser.add_mutually_exclusive_group(required=True)
    driver.add_argument("--tick", type=float, help="one unit of work every TICK seconds")
    driver.add_argument("--serve", action="store_true", help="one unit of work per HTTP GET")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    if args.tick:
        print("ticking", flush=True)
        while True:
            work(args.mode, args.leak_kb, args.noise_mb)
            time.sleep(args.tick)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            work(args.mode, args.leak_kb, args.noise_mb)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


# --- started and stopped from tests and benchmarks ---------------------------------------


@dataclass
class Workload:
    process: subprocess.Popen[str]
    port: int | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def requests(self, count: int) -> None:
        for _ in range(count):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as answer:  # nosec B310
                answer.read()


@contextmanager
def workload(mode: str, *args: str, serve: bool = True, tick: float = 0.05) -> Iterator[Workload]:
    driver = ["--serve"] if serve else ["--tick", str(tick)]
    process = subprocess.Popen(
        [sys.executable, "-m", "perf.memory.workloads", mode, *driver, *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,  # where `perf` is importable from, whatever the caller's directory
    )
    try:
        first = process.stdout.readline().strip() if process.stdout else ""
        yield Workload(process, int(first) if serve else None)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
