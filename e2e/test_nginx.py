"""The shipped nginx site in front of gunicorn: a real Chromium logs in over HTTPS.

Debian's nginx runs deploy/nginx/vpnadmin.conf with only its addresses and paths
substituted (ports, certificate, static directory), a self-signed certificate made by
openssl, and gunicorn with the production settings (VPNADMIN_HTTPS=1, BEHIND_PROXY=1,
ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS, collected and hashed static files).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from conftest import PASSWORD, _test_database_url, child_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "deploy" / "nginx" / "vpnadmin.conf"
NGINX = "/usr/sbin/nginx"
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(name: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"{name} did not listen on {port}:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _substitute(text: str, replacements: dict[str, str]) -> str:
    """The shipped text with each placeholder replaced; every one must occur in it."""
    for old, new in replacements.items():
        assert old in text, f"{SITE.name} no longer contains {old!r}: update this test with the site"
        text = text.replace(old, new)
    return text


@dataclass
class Site:
    https_url: str
    http_url: str
    certificate: Path
    app_env: dict[str, str]


@pytest.fixture(scope="module")
def site(django_db_setup: None) -> Iterator[Site]:
    if not Path(NGINX).exists():
        pytest.fail("Debian's nginx is missing; `make test` installs it (scripts/prepare-test-machine.sh).")
    # Under /tmp and world-traversable: nginx's workers run unprivileged and read static/.
    root = Path(tempfile.mkdtemp(prefix="vpnadmin-nginx-test-"))
    root.chmod(0o755)
    var_dir, prefix = root / "var", root / "nginx"
    var_dir.mkdir()
    prefix.mkdir()
    http_port, https_port, app_port = _free_port(), _free_port(), _free_port()
    https_url = f"https://127.0.0.1:{https_port}"

    certificate, key = prefix / "cert.pem", prefix / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
    )

    # The production settings, as deploy/vpnadmin.env.example lists them.
    env = child_env(
        DATABASE_URL=_test_database_url(),
        DJANGO_SETTINGS_MODULE="vpnadmin.settings",
        VPNADMIN_VAR_DIR=str(var_dir),
        VPNADMIN_HTTPS="1",
        BEHIND_PROXY="1",
        ALLOWED_HOSTS="127.0.0.1",
        CSRF_TRUSTED_ORIGINS=https_url,
        SECRET_KEY="nginx-e2e-" + "x7Qp2mZ9vL4kR8tW1yB6nC3dF5gH0jK" * 2,
        # The keys the test process encrypts with, shared as several hosts would share them.
        VPNADMIN_ENCRYPTION_KEYS=",".join(settings.VPNADMIN_ENCRYPTION_KEYS),
        BIND="127.0.0.1",
        PORT=str(app_port),
        WEB_CONCURRENCY="1",
        GUNICORN_MAX_REQUESTS="0",
        MEMORY_SAMPLER="0",
    )
    # Production serves collected, hashed files: none of the tests' shortcuts.
    for name in ("STATICFILES_BACKEND", "WHITENOISE_USE_FINDERS", "DEBUG"):
        env.pop(name, None)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
    )

    site_conf = _substitute(
        SITE.read_text(),
        {
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen [::]:80;": "",  # IPv6 may be missing on a test machine
            "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
            "listen [::]:443 ssl http2;": "",
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{app_port};",
            "/etc/letsencrypt/live/vpn.example.org/fullchain.pem": str(certificate),
            "/etc/letsencrypt/live/vpn.example.org/privkey.pem": str(key),
            "/var/lib/vpnadmin/static/": f"{var_dir / 'static'}/",
            "server_name vpn.example.org;": "server_name 127.0.0.1;",
        },
    )
    (prefix / "site.conf").write_text(site_conf)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"""daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 128; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix / "access.log"};
{temp_paths}
    include {prefix / "site.conf"};
}}
"""
    )
    nginx_args = [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(prefix / "nginx.conf")]
    checked = subprocess.run([*nginx_args, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr

    app_log = root / "gunicorn.log"
    with app_log.open("wb") as out:
        app = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "vpnadmin/gunicorn.conf.py"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    nginx = subprocess.Popen(nginx_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port("gunicorn", app_port, app, app_log)
        _wait_for_port("nginx", https_port, nginx, prefix / "error.log")
        yield Site(https_url, f"http://127.0.0.1:{http_port}", certificate, env)
    finally:
        _stop(nginx)
        _stop(app)
        shutil.rmtree(root, ignore_errors=True)


def test_an_operator_logs_in_through_nginx_over_https(browser: Any, site: Site, owner: Any) -> None:
    context = browser.new_context(base_url=site.https_url, ignore_https_errors=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto("/")
        assert page.url.startswith(f"{site.https_url}/login/")
        page.fill("#id_username", owner.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")  # a POST with a CSRF token, checked against the origin
        page.wait_for_selector("[data-component=database]")
        assert page.url == f"{site.https_url}/"
        cookies = {cookie["name"]: cookie for cookie in context.cookies()}
        assert cookies[settings.SESSION_COOKIE_NAME]["secure"] is True
        assert cookies[settings.SESSION_COOKIE_NAME]["httpOnly"] is True
        assert cookies[settings.CSRF_COOKIE_NAME]["secure"] is True
        stylesheet = page.locator("link[rel=stylesheet]").first.get_attribute("href")
    finally:
        context.close()

    # Static files come from collectstatic's hashed copies, served by nginx itself.
    assert stylesheet is not None and re.search(r"\.[0-9a-f]{12}\.css$", stylesheet), stylesheet
    static = requests.get(f"{site.https_url}{stylesheet}", verify=str(site.certificate), timeout=10)
    assert static.status_code == 200
    assert "immutable" in static.headers["Cache-Control"]


def test_pages_through_nginx_carry_hsts_and_plain_http_is_redirected(site: Site) -> None:
    login = requests.get(f"{site.https_url}/login/", verify=str(site.certificate), timeout=10)
    assert login.status_code == 200  # X-Forwarded-Proto believed: no redirect loop
    assert login.headers["Strict-Transport-Security"].startswith("max-age=")
    assert login.headers["Server"].startswith("nginx")

    plain = requests.get(f"{site.http_url}/login/", allow_redirects=False, timeout=10)
    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://127.0.0.1/login/"


def test_the_production_settings_of_this_site_pass_the_deploy_check(site: Site) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=site.app_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gunicorn_itself_sends_plain_http_to_https(site: Site) -> None:
    """Reached without the proxy's X-Forwarded-Proto, the app still insists on TLS."""
    app_url = f"http://127.0.0.1:{site.app_env['PORT']}/login/"
    direct = requests.get(app_url, allow_redirects=False, timeout=10, headers={"Host": "127.0.0.1"})
    assert direct.status_code == 301
    assert direct.headers["Location"] == "https://127.0.0.1/login/"


def test_nginx_logs_subscription_urls_without_their_token(site: Site) -> None:
    token = "nginx-log-probe-" + os.urandom(8).hex()
    for url in (f"{site.https_url}/sub/{token}/", f"{site.http_url}/sub/{token}/"):
        requests.get(url, verify=str(site.certificate), allow_redirects=False, timeout=10)
    log = Path("/var/log/nginx/vpnadmin.access.log").read_text(errors="replace")
    assert token not in log
    assert "/sub/<token>/" in log
