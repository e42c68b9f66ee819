"""gunicorn configuration: `gunicorn -c vpnadmin/gunicorn.conf.py vpnadmin.wsgi`.

gthread workers, so a slow Docker engine ties up a thread, not a whole process; the
worker class bounds how long a client may take to send a request or read an answer
(vpnadmin/gunicorn_worker.py). Bind and sizes come from the environment.
"""

from __future__ import annotations

import os

# The web role: requests get the short statement timeout (settings.DATABASE_STATEMENT_TIMEOUT_MS).
os.environ.setdefault("VPNADMIN_ROLE", "web")

bind = f"{os.environ.get('BIND', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "vpnadmin.gunicorn_worker.DeadlineThreadWorker"
# Threads are cheap next to processes; more of them leave room beside slow clients.
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
# Recycle workers now and then so slow native growth never accumulates for weeks;
# the jitter keeps them from restarting all at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "500"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None  # empty: no access log
# Access lines with /sub/<token> redacted: a subscription token in a log is a working URL.
logger_class = "users.subscriptions.redact.RedactingGunicornLogger"
errorlog = "-"
wsgi_app = "vpnadmin.wsgi:application"
# gunicorn 27's control socket defaults to ~/.gunicorn/gunicorn.ctl, one path shared by
# every gunicorn of the same account (tests and benches start many): nothing here uses it.
control_socket_disable = True


# --- memory sampler and Prometheus multi-process metrics (perf) ----------------------
# The sampler runs no thread: post_worker_init hooks it to the end of the worker's
# requests (perf/memory/sampler.py), worker_exit marks the process ended.
# Every worker writes its counters to files in PROMETHEUS_MULTIPROC_DIR; /metrics sums
# them. The directory belongs to this master (var/prometheus/<pid>), emptied at start,
# removed at exit, so two servers on one machine never add up each other's figures.
def _prometheus_dir() -> str:
    import shutil
    from pathlib import Path

    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
    else:
        var_dir = Path(os.environ.get("VPNADMIN_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
        root = var_dir / "prometheus"
        root.mkdir(parents=True, exist_ok=True)
        for old in root.iterdir():  # directories of masters that are gone
            if old.name.isdigit() and not _pid_alive(int(old.name)):
                shutil.rmtree(old, ignore_errors=True)
        path = root / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def on_starting(server: object) -> None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _prometheus_dir()


def post_worker_init(worker: object) -> None:
    # After the application is loaded (Django is set up), unlike post_fork. A bare WSGI
    # app without Django settings (a benchmark baseline) runs without a sampler.
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    try:
        from perf.memory.sampler import start_worker_sampler

        start_worker_sampler()
    except Exception:
        worker.log.exception("memory sampler did not start; the worker serves without it")  # type: ignore[attr-defined]


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def worker_exit(server: object, worker: object) -> None:
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    from perf.memory.sampler import stop_worker_sampler

    stop_worker_sampler()


def on_exit(server: object) -> None:
    import shutil

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
