"""Typed readers for settings that come from the environment.

Every helper fails loudly with ``ImproperlyConfigured`` naming the variable, so a
typo in a deployment is a one-line error at start-up rather than a surprise later.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no), got {raw!r}")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def envfloat(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def envsecret(name: str, default: str = "") -> str:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker/K8s secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{name}_FILE points at {path!r}, which cannot be read: {exc.strerror}"
            ) from None
    return os.environ.get(name, default)


def persistent_secret_key(var_dir: Path) -> str:
    """SECRET_KEY from the environment, or one generated once into var/ and reused.

    A constant in the repository would be a default password for every session cookie.
    """
    key = envsecret("SECRET_KEY")
    if key:
        return key
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    # O_EXCL: two workers starting at once must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def persistent_encryption_keys(var_dir: Path) -> tuple[list[str], str]:
    """Fernet keys for secrets at rest (newest first) and where they came from.

    VPNADMIN_ENCRYPTION_KEYS (comma-separated) or VPNADMIN_ENCRYPTION_KEYS_FILE, else one
    key generated once into var/ (mode 0600). Never derived from SECRET_KEY: rotating the
    session secret must not make the stored keys unreadable, nor the reverse.
    """
    from cryptography.fernet import Fernet

    name = "VPNADMIN_ENCRYPTION_KEYS"
    raw = envsecret(name)
    source = f"{name}_FILE" if os.environ.get(f"{name}_FILE") else name
    if not raw:
        path = var_dir / "encryption_keys"
        source = str(path)
        if path.exists():
            raw = path.read_text().strip()
        else:
            var_dir.mkdir(parents=True, exist_ok=True)
            raw = Fernet.generate_key().decode()
            # Written whole under a private name, then linked into place: a process starting
            # at the same moment sees no file or the whole key, never an empty one.
            draft = var_dir / f".encryption_keys.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(raw + "\n")
            try:
                os.link(draft, path)
            except FileExistsError:  # another process won the race: use its key
                raw = path.read_text().strip()
            finally:
                draft.unlink()
    keys = [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]
    if not keys:
        raise ImproperlyConfigured(f"{source} holds no key")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"{source}: key {position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"  # noqa: E501
            ) from None
    return keys, source


def database_from_url(name: str, default: str) -> dict[str, Any]:
    """Parse a database URL into Django's DATABASES entry, naming the variable on error."""
    import dj_database_url

    url = os.environ.get(name) or default
    scheme = urlsplit(url).scheme
    if scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"{name} must be a postgres:// URL, got scheme {scheme or '(none)'!r}")
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj-database-url raises several types for malformed URLs
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database (expected postgres://user@host:port/dbname)")
    return dict(config)


def redis_url(name: str) -> str:
    url = os.environ.get(name, "")
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"{name} must be a redis://, rediss:// or unix:// URL, got {url.split('@')[-1]!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a non-numeric port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ImproperlyConfigured(f"{name} names no host")
    return url
