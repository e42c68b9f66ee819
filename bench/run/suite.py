"""The zero-config run: `make run` on a clean clone, until the login page answers.

Each round clones the committed tree into a fresh directory and runs `make run` there
with nothing set (no DATABASE_URL, no REDIS_URL): a new virtualenv from the hashed lock
file, the embedded PostgreSQL and Redis created under var/, migrate, collectstatic,
createadmin, honcho with gunicorn and the worker. The baseline, measured in alternation
with it, is what any install costs anyway: a fresh virtualenv and `pip install
--require-hashes -r requirements.txt` alone. Both install from the local wheelhouse
that scripts/prepare-test-machine.sh fills (a warm cache without network traffic).

A second row restarts `make run` on a clone that already has its virtualenv and
cluster, against gunicorn alone starting on an external database.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.harness import REPO, Row, free_port

WHEELHOUSE = REPO / "var" / "wheelhouse"
ROUNDS = 3
START_TIMEOUT_S = 600.0
BASE_PYTHON = os.path.realpath(sys.executable)  # the interpreter behind the venv: a Python 3.11


def _clean_env(**extra: str) -> dict[str, str]:
    """A newcomer's shell: no settings at all, pip pointed at the local wheelhouse only."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(WHEELHOUSE), PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback server  # nosec B310
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _make_run_until_login(clone: Path) -> float:
    """Seconds from `make run` to the first 200 of /login/; the run is stopped afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/login/"
    log = clone / "make-run.log"
    started = time.perf_counter()
    with log.open("ab") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PYTHON={BASE_PYTHON}"],
            cwd=clone,
            env=_clean_env(PORT=str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while not _answers(url):
            if make.poll() is not None or time.perf_counter() - started > START_TIMEOUT_S:
                raise RuntimeError(f"make run did not serve {url}; {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: everything stops, engines last
            try:
                make.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()
    return elapsed


def _pip_install_alone(root: Path) -> float:
    venv = root / "venv"
    started = time.perf_counter()
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--require-hashes", "-r", str(REPO / "requirements.txt")],
        check=True,
        env=_clean_env(),
    )
    elapsed = time.perf_counter() - started
    shutil.rmtree(venv)
    return elapsed


def _gunicorn_until_login() -> float:
    """gunicorn of this checkout on the benchmark database (bench sets DATABASE_URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/login/"
    env = {**os.environ, "BIND": "127.0.0.1", "PORT": str(port), "GUNICORN_ACCESSLOG": ""}
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "vpnadmin/gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not _answers(url):
            if server.poll() is not None or time.perf_counter() - started > START_TIMEOUT_S:
                raise RuntimeError("gunicorn did not serve the login page")
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=60)


def _clone(root: Path, name: str) -> Path:
    target = root / name
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(target)], check=True)
    return target


def run() -> list[Row]:
    if not any(WHEELHOUSE.glob("*.whl")):
        raise RuntimeError(f"no wheels in {WHEELHOUSE}: `make prepare` (scripts/prepare-test-machine.sh) fills it")
    root = Path(tempfile.mkdtemp(prefix="vpnadmin-bench-run-"))
    root.chmod(0o755)  # run by root, the embedded engines' own user must reach the clone
    try:
        cold: list[float] = []
        install: list[float] = []
        clone = root
        for index in range(ROUNDS):
            install.append(_pip_install_alone(root))
            clone = _clone(root, f"clone-{index}")
            cold.append(_make_run_until_login(clone))
            if index < ROUNDS - 1:
                shutil.rmtree(clone)
        # The last clone keeps its virtualenv and cluster: a second `make run` there.
        warm: list[float] = []
        alone: list[float] = []
        for _ in range(ROUNDS):
            alone.append(_gunicorn_until_login())
            warm.append(_make_run_until_login(clone))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        Row.compare(
            "make run, clean clone: until /login/ answers",
            statistics.median(cold),
            "fresh venv + pip install --require-hashes -r requirements.txt alone (same wheelhouse)",
            statistics.median(install),
            "<= 2",
        ),
        Row.compare(
            "make run again (venv and cluster exist): until /login/ answers",
            statistics.median(warm),
            "gunicorn alone on an external PostgreSQL, until /login/ answers",
            statistics.median(alone),
            "<= 8",
        ),
    ]
