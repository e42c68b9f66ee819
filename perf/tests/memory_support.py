"""Real processes for the memory tests: the workloads in memory_workloads.py, started and stopped."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

WORKLOADS = Path(__file__).with_name("memory_workloads.py")


@dataclass
class Workload:
    process: subprocess.Popen[str]
    port: int | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def requests(self, count: int) -> None:
        for _ in range(count):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as answer:
                answer.read()


@contextmanager
def workload(mode: str, *args: str, serve: bool = True, tick: float = 0.05) -> Iterator[Workload]:
    driver = ["--serve"] if serve else ["--tick", str(tick)]
    process = subprocess.Popen(
        [sys.executable, str(WORKLOADS), mode, *driver, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        first = process.stdout.readline().strip() if process.stdout else ""
        yield Workload(process, int(first) if serve else None)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
