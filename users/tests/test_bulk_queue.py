"""Bulk actions over more users than a request may touch run in a real queue worker."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.test import Client

from conftest import QueueWorker
from users import bulk, services
from users.models import VpnUser
from users.tests.factories import make_users
from users.tests.servers import make_server
from vpnadmin.models import AuditEntry


def _text(response: Any) -> str:
    return response.content.decode()


def _stamp(response: Any) -> str:
    found = re.search(r'name="stamp" value="([^"]+)"', _text(response))
    assert found, _text(response)
    return found.group(1)


def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the queue worker did not finish in time")
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_a_bulk_edit_over_more_users_than_a_request_may_touch_runs_in_a_queue_worker(
    queue_worker: QueueWorker, owner_client: Client, settings: Any
) -> None:
    settings.USERS_BULK_INLINE_MAX = 10
    make_users(25, prefix="big", data_limit=1000)
    make_users(2, prefix="small", data_limit=1000)
    selection = {"action": "edit", "select_all": "on", "q": "big"}
    asked = owner_client.post("/users/bulk/", selection)
    fields = {"edit-note": "queued", "edit-add_data": "24"}
    response = owner_client.post(
        "/users/bulk/", {**selection, "post": "yes", "stamp": _stamp(asked), **fields}, follow=True
    )
    assert "Queued: “Edit" in _text(response) and "on 25 users runs in a queue worker" in _text(response)
    _wait_for(lambda: AuditEntry.objects.filter(action="users_bulk_edit").exists())
    assert VpnUser.objects.filter(note="queued", data_limit=1024).count() == 25
    assert not VpnUser.objects.filter(username__startswith="small", note="queued").exists()
    entry = AuditEntry.objects.get(action="users_bulk_edit")
    assert entry.actor_name == "owner" and entry.count == 25 and "(queue job " in entry.detail["selection"]


@pytest.mark.django_db(transaction=True)
def test_a_big_delete_from_the_admin_runs_in_a_queue_worker(
    queue_worker: QueueWorker, owner_client: Client, settings: Any
) -> None:
    settings.USERS_BULK_INLINE_MAX = 5
    ids = make_users(12)
    make_users(3, prefix="wg", protocol="wireguard")
    base = {"action": "delete", "_selected_action": [str(ids[0])], "index": "0", "select_across": "1"}
    url = "/admin/users/vpnuser/?protocol__exact=vless"
    asked = owner_client.post(url, base)
    response = owner_client.post(url, {**base, "post": "yes", "stamp": _stamp(asked)}, follow=True)
    assert "runs in a queue worker" in _text(response)
    _wait_for(lambda: AuditEntry.objects.filter(action="users_delete").exists())
    assert sorted(VpnUser.objects.values_list("protocol", flat=True)) == ["wireguard"] * 3


@pytest.mark.django_db
def test_a_big_edit_is_checked_before_it_is_queued(owner_client: Client, settings: Any) -> None:
    settings.USERS_BULK_INLINE_MAX = 3
    server = make_server("wg-q", "wireguard")
    make_users(5)
    selection = {"action": "edit", "select_all": "on"}
    asked = owner_client.post("/users/bulk/", selection)
    response = owner_client.post(
        "/users/bulk/", {**selection, "post": "yes", "stamp": _stamp(asked), "edit-server": str(server.pk)}
    )
    assert response.status_code == 400 and "5 of the selected users do not use wireguard" in _text(response)


@pytest.mark.django_db
def test_a_queued_action_that_runs_again_after_its_commit_does_nothing_twice(owner: Any) -> None:
    make_users(4, data_limit=1000)
    users = VpnUser.objects.all()
    edit = services.BulkEdit(add_bytes=10)
    arguments = bulk.queue_arguments(
        bulk.BULK_ACTIONS["edit"], users, actor=owner, selection="all", stamp=bulk.selection_stamp(users), edit=edit
    )
    done = bulk.bulk_run_queued(job_id=77, **arguments).replace("\xa0", " ")
    assert done == "Edited 4 users: data limit +10 bytes."
    assert bulk.bulk_run_queued(job_id=77, **arguments) == "done before (this is a retry)"
    assert set(VpnUser.objects.values_list("data_limit", flat=True)) == {1010}
    assert AuditEntry.objects.filter(action="users_bulk_edit").count() == 1


@pytest.mark.django_db
def test_a_queued_action_whose_selection_changed_is_refused_with_an_audit_entry(owner: Any) -> None:
    make_users(3)
    users = VpnUser.objects.all()
    stamp = bulk.selection_stamp(users)
    arguments = bulk.queue_arguments(
        bulk.BULK_ACTIONS["delete"], users, actor=owner, selection="all", stamp=stamp, edit=None
    )
    make_users(1, prefix="late")
    assert bulk.bulk_run_queued(job_id=78, **arguments).startswith("refused: The selection changed")
    assert VpnUser.objects.count() == 4
    entry = AuditEntry.objects.get(action="users_bulk_refused")
    assert entry.count == 0 and entry.actor_name == "owner" and "selection changed" in entry.detail["refused"]


@pytest.mark.django_db
def test_a_big_disable_is_queued_not_written_in_the_request(owner_client: Client, settings: Any) -> None:
    settings.USERS_BULK_INLINE_MAX = 3
    make_users(5)
    response = owner_client.post("/users/bulk/", {"action": "disable", "select_all": "on"}, follow=True)
    assert "“Disable” on more than 3 users runs in a queue worker" in _text(response)
    assert VpnUser.objects.filter(is_active=True).count() == 5


@pytest.mark.django_db
def test_a_queued_selection_not_signed_by_this_deployment_is_never_unpickled(owner: Any) -> None:
    make_users(2)
    users = VpnUser.objects.all()
    arguments = bulk.queue_arguments(
        bulk.BULK_ACTIONS["delete"], users, actor=owner, selection="all", stamp=bulk.selection_stamp(users), edit=None
    )
    # A row someone wrote into the queue table directly: a pickle with no valid signature.
    payload, _, _signature = arguments["query"].rpartition(":")
    forged = {**arguments, "query": f"{payload}:forged"}
    assert bulk.bulk_run_queued(job_id=79, **forged) == "refused: the queued selection's signature is invalid"
    assert VpnUser.objects.count() == 2
    assert AuditEntry.objects.filter(action="users_bulk_refused").count() == 1
