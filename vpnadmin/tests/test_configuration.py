"""Settings from the environment fail loudly, in one line, naming the variable."""

from __future__ import annotations

import re
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


# --- every variable is documented ------------------------------------------------------

_ENV_READ = re.compile(
    r"""(?:\benv(?:str|bool|int|float|list|secret)|\bredis_url|\bdatabase_from_url|os\.environ\.get|os\.getenv)"""
    r"""\(\s*["']([A-Z][A-Z0-9_]+)["']|os\.environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]"""
)
# Read from the environment, yet not for an operator to set.
_NOT_SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "set by manage.py, wsgi.py and gunicorn.conf.py",
    "DJANGO_ALLOW_ASYNC_UNSAFE": "the test harness's switch for Playwright",
    "VPNADMIN_TEST_RUN_ID": "the test harness's run id",
    "TEST_DATABASE_NAME": "the test harness's database name",
}


def _variables_the_code_reads() -> dict[str, str]:
    """NAME -> the first file reading it, over every module that runs in production."""
    found: dict[str, str] = {}
    # Tools (scripts/, bench/) and tests read their own variables; the app is the rest.
    skip = {".venv", "var", "bench", "e2e", "scripts", "tests", "migrations", "node_modules", ".git"}
    for path in sorted(REPO.rglob("*.py")):
        relative = path.relative_to(REPO)
        if skip & set(relative.parts) or relative.name in {"conftest.py", "testenv.py"}:
            continue
        for match in _ENV_READ.finditer(path.read_text(errors="replace")):
            name = match.group(1) or match.group(2)
            found.setdefault(name, str(relative))
            if "envsecret(" in match.group(0):
                found.setdefault(f"{name}_FILE", str(relative))
    return found


def test_the_readme_lists_every_variable_the_code_reads() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    missing = {
        name: where
        for name, where in _variables_the_code_reads().items()
        if name not in documented and name not in _NOT_SETTINGS
    }
    assert not missing, f"README.md does not list these variables (name: where it is read): {missing}"
