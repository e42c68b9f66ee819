"""Users for tests, made through the same batch service as everything else."""

from __future__ import annotations

from typing import Any

from users.services import users_create_batch


def make_users(count: int, *, prefix: str = "user", protocol: str = "vless", **values: Any) -> list[int]:
    rows = [{"username": f"{prefix}{i:04d}", "protocol": protocol, **values} for i in range(count)]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok, result.errors
    return result.ids
