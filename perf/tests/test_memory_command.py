"""`manage.py profilememory` against real processes: leaks found, faults reported, usage errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from conftest import REPO, child_env
from perf.memory.workloads import workload
from perf.models import MemoryProcess, MemorySnapshot

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("profilememory", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_watches_a_leaking_process_for_a_duration_and_writes_a_report(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    with workload("leak", "--leak-kb", "1024", "--noise-mb", "1", serve=False, tick=0.05) as leaky:
        out, _ = _run(
            "--pid", str(leaky.pid), "--duration", "4", "--interval", "0.25", "--warmup", "0",
            "--output", str(report_path),
        )  # fmt: skip
    report = json.loads(report_path.read_text())
    [proc] = report["processes"]
    assert proc["pid"] == leaky.pid
    assert proc["snapshots"] >= 10
    assert proc["finding"]["severity"] in {"medium", "high", "critical"}
    assert proc["finding"]["evidence"]["rss_trend"]["r2"] >= 0.6
    assert proc["last_rss_mb"] > proc["first_rss_mb"]
    assert f"pid {leaky.pid}: CRITICAL leak: RSS grows" in out or f"pid {leaky.pid}: HIGH leak" in out
    assert f"Report written to {report_path}" in out
    stored = MemoryProcess.objects.get(pid=leaky.pid, role="watched")
    assert MemorySnapshot.objects.filter(process=stored).count() == proc["snapshots"]
    assert stored.findings.filter(closed_at__isnull=True).exists()


def test_a_flat_process_gives_a_report_without_a_finding(tmp_path: Path) -> None:
    report_path = tmp_path / "flat.json"
    with workload("flat", "--noise-mb", "2", serve=False, tick=0.05) as flat:
        _run(
            "--pid", str(flat.pid), "--duration", "3", "--interval", "0.2", "--warmup", "0",
            "--output", str(report_path), "--no-store",
        )  # fmt: skip
    [proc] = json.loads(report_path.read_text())["processes"]
    assert proc["finding"] is None
    assert not MemoryProcess.objects.filter(pid=flat.pid).exists()  # --no-store


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give at least one --pid or a --gunicorn-master"),
        (("--pid", "abc"), "'abc' is not a process id"),
        (("--pid", "-4"), "a process id is a positive integer"),
        (("--pid", "1", "--interval", "0"), "must be more than 0 seconds"),
        (("--pid", "1", "--duration", "soon"), "'soon' is not a number of seconds"),
        (("--pid", "1", "--warmup", "-1"), "must be 0 seconds or more"),
        (("--pid", "1", "--output", "/no/such/folder/report.json"), "the folder /no/such/folder does not exist"),
    ],
)
def test_bad_options_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _run(*args)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_pid_that_does_not_exist_is_refused_clearly() -> None:
    pid = _dead_pid()
    with pytest.raises(CommandError, match=f"nothing to watch: pid {pid} is not watched: no such process"):
        _run("--pid", str(pid), "--duration", "1")


def test_a_pid_of_another_account_is_not_ours_and_the_rest_are_still_watched(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "60"], user="nobody")
    try:
        with workload("flat", serve=False) as mine:
            out, err = _run(
                "--pid", str(other.pid), "--pid", str(mine.pid), "--duration", "0.5", "--interval", "0.2", "--no-store"
            )
    finally:
        other.kill()
        other.wait()
    assert f"pid {other.pid} is not watched: it belongs to uid" in err
    assert f"pid {mine.pid}:" in out


def test_a_process_that_dies_between_snapshots_is_reported_and_the_watch_ends(tmp_path: Path) -> None:
    report_path = tmp_path / "died.json"
    short = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.2)"])
    _, err = _run("--pid", str(short.pid), "--duration", "30", "--interval", "0.2", "--output", str(report_path))
    short.wait()
    assert f"pid {short.pid} ended between snapshots" in err
    assert "every watched process has ended" in err
    report = json.loads(report_path.read_text())
    assert report["processes"][0]["ended"] is True
    assert report["duration_s"] < 30
    assert MemoryProcess.objects.get(pid=short.pid).ended_at is not None


def test_a_full_store_is_reported_once_and_the_watch_goes_on(tmp_path: Path) -> None:
    from django.utils import timezone

    now = timezone.now()
    MemoryProcess.objects.create(host="elsewhere", pid=1, started_at=now, last_seen_at=now)
    report_path = tmp_path / "full.json"
    with override_settings(PROFILER={"max_processes": 1}), workload("flat", serve=False) as flat:
        _, err = _run("--pid", str(flat.pid), "--duration", "1", "--interval", "0.2", "--output", str(report_path))
    assert err.count("snapshot store full: the snapshot store is full: 1 processes") == 1
    assert "watching goes on in memory" in err
    assert json.loads(report_path.read_text())["processes"][0]["snapshots"] >= 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_store_that_is_down_is_reported_and_the_report_is_still_written(tmp_path: Path) -> None:
    report_path = tmp_path / "down.json"
    env = child_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:{_closed_port()}/nowhere")
    with workload("flat", serve=False) as flat:
        result = subprocess.run(
            [
                *(sys.executable, "manage.py", "profilememory", "--pid", str(flat.pid)),
                *("--duration", "1", "--interval", "0.25", "--output", str(report_path)),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("snapshot store unavailable") == 1
    assert "Traceback" not in result.stderr
    assert json.loads(report_path.read_text())["processes"][0]["snapshots"] >= 3


@pytest.mark.django_db(transaction=True)
def test_it_watches_every_worker_of_a_gunicorn_master(live_app: Any, tmp_path: Path) -> None:
    report_path = tmp_path / "gunicorn.json"
    _run(
        "--gunicorn-master", str(live_app.process.pid), "--duration", "1", "--interval", "0.25",
        "--output", str(report_path), "--no-store",
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    pids = {proc["pid"] for proc in report["processes"]}
    import psutil

    assert pids == {child.pid for child in psutil.Process(live_app.process.pid).children()}
    assert len(pids) == 2
    assert all(proc["last_rss_mb"] > 10 for proc in report["processes"])
    assert os.getpid() not in pids
