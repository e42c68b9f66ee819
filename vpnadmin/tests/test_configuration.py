"""Settings from the environment fail loudly, in one line, naming the variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from conftest import child_env
from vpnadmin.env import database_from_url, envbool, envint, redis_url

REPO = Path(__file__).resolve().parents[2]


def test_a_boolean_that_is_not_one_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG"):
        envbool("DEBUG", False)


def test_an_integer_below_its_minimum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "-1")
    with pytest.raises(ImproperlyConfigured, match="WORKERS must be at least 1"):
        envint("WORKERS", 2, minimum=1)


def test_a_database_url_with_an_unknown_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/x")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL must be a postgres"):
        database_from_url("DATABASE_URL", "postgres://postgres@127.0.0.1/x")


def test_a_redis_url_that_is_not_redis_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://127.0.0.1:6379")
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        redis_url("REDIS_URL")


def test_a_redis_url_error_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://user:hunter2@127.0.0.1:6379")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        redis_url("REDIS_URL")
    assert "hunter2" not in str(excinfo.value)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=child_env(**env), capture_output=True, text=True, timeout=60
    )


def test_manage_py_with_a_wrong_database_url_prints_one_line() -> None:
    result = _manage("check", DATABASE_URL="oracle://nobody@nowhere/db")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_manage_py_with_a_wrong_redis_url_prints_one_line() -> None:
    result = _manage("check", REDIS_URL="redis://127.0.0.1:notaport/0")
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_url_to_a_server_that_is_down_is_one_line() -> None:
    result = _manage("migrate", "--check", DATABASE_URL="postgres://postgres@127.0.0.1:9/nothing_here")
    assert result.returncode == 2
    assert result.stderr.startswith("Cannot use the database named by DATABASE_URL:")
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_production_settings_pass_the_deploy_check(tmp_path: Path) -> None:
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        VPNADMIN_HTTPS="1",
        SECRET_KEY="k" * 10 + "Q9!x-long-random-production-key-4f0c2e7d9b1a8c6e5d3f",
        ALLOWED_HOSTS="vpn.example.org",
        VPNADMIN_VAR_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_a_secret_key_one_is_generated_once_and_kept(tmp_path: Path) -> None:
    env = {k: v for k, v in child_env().items() if k != "SECRET_KEY"}
    script = "from django.conf import settings; print(settings.SECRET_KEY)"
    run = [sys.executable, "-c", f"import django; django.setup(); {script}"]
    env.update(DJANGO_SETTINGS_MODULE="vpnadmin.settings", VPNADMIN_VAR_DIR=str(tmp_path))
    first = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(run, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    assert first == second
    assert len(first.strip()) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
