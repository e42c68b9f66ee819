"""A subscription token in a log line is a working URL: neither the app's log nor
gunicorn's access log ever holds one."""

from __future__ import annotations

import io
import logging
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client

from conftest import REPO, _test_database_url, child_env
from users.services import users_create_batch
from users.subscriptions.redact import RedactSubscriptionTokens, redact
from users.subscriptions.services import subscription_rotate


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _token() -> str:
    result = users_create_batch(actor=None, rows=[{"username": "logged", "protocol": "vless"}])
    assert result.ok, result.errors
    issued = subscription_rotate(actor=None, user_id=result.ids[0])
    assert issued is not None
    return issued.token


def test_redact_removes_whatever_follows_sub_in_any_text() -> None:
    assert redact("GET /sub/abcDEF_-123/?format=clash HTTP/1.1") == "GET /sub/[redacted]/?format=clash HTTP/1.1"
    assert redact("Bad Request: /sub/abc") == "Bad Request: /sub/[redacted]"
    assert redact("/users/1/ nothing here") == "/users/1/ nothing here"


@pytest.fixture
def console_output() -> Iterator[io.StringIO]:
    """The configured console handler (with its filters), writing into a buffer for the test."""
    handler = next(
        h for h in logging.getLogger().handlers if any(isinstance(f, RedactSubscriptionTokens) for f in h.filters)
    )
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


@pytest.mark.django_db
def test_djangos_request_log_lines_for_sub_urls_carry_no_token(console_output: io.StringIO) -> None:
    token = _token()
    assert Client().get(f"/sub/{token}/", {"format": "nope"}).status_code == 400  # Django logs 4xx answers
    assert Client().get(f"/sub/{token}x/").status_code == 404
    text = console_output.getvalue()
    assert "Bad Request: /sub/[redacted]/" in text and "Not Found: /sub/[redacted]/" in text
    assert token not in text


@pytest.mark.django_db(transaction=True)
def test_gunicorns_access_log_carries_no_token(tmp_path: Path) -> None:
    token = _token()
    access_log = tmp_path / "access.log"
    port = _free_port()
    env = child_env(DATABASE_URL=_test_database_url(), BIND="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="1",
                    GUNICORN_ACCESSLOG=str(access_log), DJANGO_SETTINGS_MODULE="vpnadmin.settings")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "vpnadmin/gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/sub/{token}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.status == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=15)
    text = access_log.read_text()
    assert "/sub/[redacted]/" in text and token not in text
