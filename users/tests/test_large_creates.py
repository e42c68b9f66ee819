"""Large creates: the search indexes' pending lists take the batch; one queued merge follows."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from users import services
from users.models import VpnUser
from users.tasks import clean_search_indexes
from users.tests.factories import make_users

pytestmark = pytest.mark.django_db


def _queued_merges() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'users.clean_search_indexes' AND status = 'todo'"
        )
        return int(cursor.fetchone()[0])


def test_a_large_create_queues_one_merge_of_the_search_indexes(
    django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "LARGE_BATCH", 20)
    with django_capture_on_commit_callbacks(execute=True):
        make_users(5, prefix="small")
    assert _queued_merges() == 0
    with django_capture_on_commit_callbacks(execute=True):
        make_users(20, prefix="big")
    with django_capture_on_commit_callbacks(execute=True):
        make_users(20, prefix="bigger")
    assert _queued_merges() == 1  # one waiting merge covers both batches


def test_the_larger_pending_list_lasts_only_for_the_create_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "LARGE_BATCH", 20)
    with connection.cursor() as cursor:
        cursor.execute("SHOW gin_pending_list_limit")
        before = cursor.fetchone()[0]
        make_users(20)
        cursor.execute("SHOW gin_pending_list_limit")
        assert cursor.fetchone()[0] == before


def test_the_merge_leaves_every_user_findable_by_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "LARGE_BATCH", 20)
    make_users(30, prefix="findme")
    assert clean_search_indexes() >= 0
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        found = VpnUser.objects.filter(username__icontains="dme00").count()
    assert found == 30
