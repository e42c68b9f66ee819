"""Coherence across worker processes: what one process writes or invalidates, another sees.

The other process is a real Python process with the app's settings, on the same Redis
prefix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import pytest
from django.core.cache import cache as default_cache

from perf.cache import RedisTaggedCache
from perf.cache.metrics import read_totals

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]

# The default cache is always the tagged backend: typed as such for the checker.
cache = cast("RedisTaggedCache", default_cache)


def run_in_other_process(code: str, **env: str) -> Any:
    """Run `code` in a fresh process with Django set up; it prints one JSON value."""
    program = "import django, json\ndjango.setup()\n" + textwrap.dedent(code)
    child_env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    child_env.update({"DJANGO_SETTINGS_MODULE": "vpnadmin.settings", "PYTHONPATH": str(REPO), **env})
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, env=child_env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_a_value_written_in_another_process_is_read_here_and_invalidated_there() -> None:
    run_in_other_process(
        """
        from django.core.cache import cache
        cache.set("shared:card", {"from": "child"}, 60, tags=["user:5"])
        print(json.dumps(True))
        """
    )
    assert cache.get("shared:card") == {"from": "child"}
    cache.invalidate_tags(["user:5"])
    seen = run_in_other_process(
        """
        from django.core.cache import cache
        print(json.dumps(cache.get("shared:card", "miss")))
        """
    )
    assert seen == "miss"


def test_metrics_from_every_process_add_up() -> None:
    before = read_totals()
    run_in_other_process(
        """
        from django.core.cache import cache
        from perf.cache.metrics import read_totals
        cache.set("x", 1)
        for _ in range(3):
            cache.get("x")
        print(json.dumps(read_totals()))
        """
    )
    cache.get("x")
    totals = read_totals()
    assert totals["hits"] - before["hits"] == 4
    assert totals["sets"] - before["sets"] == 1
