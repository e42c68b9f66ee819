"""A real PostgreSQL stopped under a running gunicorn: /healthz stays JSON, pages say 503.

The cluster is private to the test (initdb into a temporary directory, run as the
unprivileged engine user as `make run` does), so stopping it disturbs nobody.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import Client, RequestFactory

from conftest import REPO, _free_port, child_env
from vpnadmin.embedded import Engine, Layout, engine_account, start_postgres
from vpnadmin.embedded import _prepare_socket_dir as prepare_socket_dir  # what the launcher does first


@dataclass
class Served:
    url: str
    postgres: Engine
    log_path: Path


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - our own loopback server
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


@pytest.fixture
def served_on_a_private_postgres() -> Iterator[Served]:
    var_dir = Path(tempfile.mkdtemp(prefix="vpnadmin-outage-"))
    var_dir.chmod(0o755)  # the engine user must get in (pytest's own tmp dirs are 0700)
    layout = Layout.for_var_dir(var_dir)
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    account = engine_account()
    for path in (layout.var_dir, layout.log_dir, layout.run_dir):
        account.chown(path)
    prepare_socket_dir(layout, account)
    postgres = start_postgres(layout, account)
    port = _free_port()
    log_path = var_dir / "gunicorn.log"
    env = child_env(
        DATABASE_URL=layout.database_url(),
        DATABASE_CONNECT_TIMEOUT="1",
        BIND="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        GUNICORN_MAX_REQUESTS="0",
        GUNICORN_ACCESSLOG="",
        MEMORY_SAMPLER="0",
        PROMETHEUS_MULTIPROC_DIR=str(var_dir / "prometheus"),
        DJANGO_SETTINGS_MODULE="vpnadmin.settings",
    )
    log = log_path.open("wb")
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "vpnadmin/gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"{url}/healthz")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if gunicorn.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        yield Served(url=url, postgres=postgres, log_path=log_path)
    finally:
        gunicorn.terminate()
        try:
            gunicorn.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gunicorn.kill()
        log.close()
        postgres.stop()
        shutil.rmtree(var_dir, ignore_errors=True)


def test_stopping_postgresql_turns_healthz_into_a_json_503_every_time(served_on_a_private_postgres: Served) -> None:
    served = served_on_a_private_postgres
    status, content_type, body = _get(f"{served.url}/healthz")
    assert status == 200, body  # an empty database: the database answers, optional parts may be degraded
    assert json.loads(body)["status"] in ("ok", "degraded")

    served.postgres.stop()
    for _ in range(5):
        status, content_type, body = _get(f"{served.url}/healthz")
        assert status == 503
        assert content_type.startswith("application/json")
        assert json.loads(body) == {"status": "down"}


def test_a_page_with_postgresql_stopped_is_a_branded_503_without_a_traceback(
    served_on_a_private_postgres: Served,
) -> None:
    served = served_on_a_private_postgres
    served.postgres.stop()
    status, _content_type, body = _get(f"{served.url}/", headers={"Cookie": "sessionid=some-session-key"})
    assert status == 503
    text = body.decode()
    assert "Temporarily unavailable" in text
    assert "Traceback" not in text and "SECRET_KEY" not in text and "psycopg" not in text


def test_the_500_page_shows_no_traceback_or_settings() -> None:
    from vpnadmin.views import server_error

    request = RequestFactory().get("/")
    try:
        raise RuntimeError("secret detail: SECRET_KEY=abc")
    except RuntimeError:
        response = server_error(request)
    assert response.status_code == 500
    text = response.content.decode()
    assert "Something went wrong" in text and "secret detail" not in text and "Traceback" not in text


@pytest.mark.django_db
def test_a_missing_page_is_the_branded_404(owner_client: Client) -> None:
    response = owner_client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"Not found" in response.content and b"Traceback" not in response.content
    assert response["X-Request-ID"].encode() in response.content
