"""The zero-config run (SQLite, no Redis): the same services work without COPY or full text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import child_env

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
from users.models import VpnUser
from users.selectors import UserFilter, filtered_users, users_page, users_stats
from users.services import users_create_batch, users_delete, users_set_active, users_update_batch
rows = [{"username": "ok-one", "protocol": "vless"}, {"username": "x", "protocol": "vless"}]
bad = users_create_batch(actor=None, rows=rows)
assert bad.written == 0 and [e.position for e in bad.errors] == [2], bad
ids = VpnUser.objects.filter(username__startswith="sq-").values_list("pk", flat=True)
result = users_update_batch(actor=None, changes={pk: {"used_traffic": pk, "note": "berlin office"} for pk in ids})
assert result.written == 30, result
qs, _, _ = filtered_users(UserFilter(q="berlin"))
assert qs.count() == 30
assert users_page(UserFilter(q="sq-0"), ordering="username").rows[0]["username"] == "sq-00"
assert users_set_active(actor=None, users=VpnUser.objects.filter(pk__in=list(ids)[:5]), active=False) == 5
assert users_stats()["status_disabled"] == 5
assert users_delete(actor=None, users=filtered_users(UserFilter(status="disabled"))[0]) == 5
print("sqlite-ok", VpnUser.objects.count())
"""


def test_the_zero_config_sqlite_run_creates_updates_searches_and_deletes(tmp_path: Path) -> None:
    env = {k: v for k, v in child_env(VPNADMIN_VAR_DIR=str(tmp_path)).items() if k not in ("DATABASE_URL", "REDIS_URL")}

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )

    migrated = manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    created = manage("createusers", "--count", "30", "--prefix", "sq-")
    assert created.returncode == 0, created.stderr
    assert "created 30 of 30 users" in created.stdout
    checked = manage("shell", "-c", SCRIPT)
    assert checked.returncode == 0, checked.stderr
    assert "sqlite-ok 25" in checked.stdout
    exported = manage("exportusers", "--protocol", "vless")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("username,email,protocol,status")
