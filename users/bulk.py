"""The bulk actions on VPN users, described once: the list page and the admin run these.

An action is a name, a label, the permission it needs, the service it calls and the
message it ends with. Destructive ones (reset traffic, delete) and the bulk edit ask
first: the confirmation page shows how many users the selection holds and carries a
stamp of them (`selectors.selection_stamp`); the write refuses if the selection holds
other users by then. Both the page and the admin go through `bulk_step`, so both ask,
validate and refuse in the same way; only the templates around them differ.
"""

from __future__ import annotations

import base64
import datetime
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import connection, transaction
from django.db.models import QuerySet
from django.template.defaultfilters import filesizeformat

from users import services
from users.forms import BulkEditForm
from users.models import VpnUser
from users.selectors import selection_stamp, server_options
from vpnadmin.audit import audit_record
from vpnadmin.models import AuditEntry

if TYPE_CHECKING:
    from django.contrib.auth.models import User

_STAMP = re.compile(r"^\d{1,12}:\d{1,40}$")


@dataclass(frozen=True)
class BulkAction:
    name: str
    label: str
    permission: str  # "change" or "delete": the model permission an operator needs
    run: Callable[..., int]  # (actor=, users=, selection=, stamp=, edit=) -> count
    done: str  # the message afterwards, with {count} (and {summary} for the edit)
    question: str = ""  # destructive: asked first, with {count}; empty runs at once
    warning: str = ""  # what the question's answer costs
    edits: bool = False  # the bulk edit: a form of fields first

    @property
    def asks_first(self) -> bool:
        return bool(self.question) or self.edits


def _set_active(active: bool) -> Callable[..., int]:
    def run(*, edit: services.BulkEdit | None = None, **kwargs: Any) -> int:
        return services.users_set_active(active=active, **kwargs)

    return run


def _reset(*, edit: services.BulkEdit | None = None, **kwargs: Any) -> int:
    return services.users_reset_traffic(**kwargs)


def _delete(*, edit: services.BulkEdit | None = None, **kwargs: Any) -> int:
    return services.users_delete(**kwargs)


def _edit(*, edit: services.BulkEdit | None = None, **kwargs: Any) -> int:
    assert edit is not None
    return services.users_bulk_edit(edit=edit, **kwargs)


BULK_ACTIONS: dict[str, BulkAction] = {
    action.name: action
    for action in (
        BulkAction("enable", "Enable", "change", _set_active(True), "Enabled {count:,} users."),
        BulkAction("disable", "Disable", "change", _set_active(False), "Disabled {count:,} users."),
        BulkAction(
            "edit",
            "Edit (server, data limit, expiry, reset, note)…",
            "change",
            _edit,
            "Edited {count:,} users: {summary}.",
            edits=True,
        ),
        BulkAction(
            "reset_traffic",
            "Reset used traffic",
            "change",
            _reset,
            "Reset the traffic of {count:,} users.",
            question="Reset the used traffic of {count} users to zero?",
            warning="What they used so far is forgotten; users who were limited can connect again.",
        ),
        BulkAction(
            "delete",
            "Delete",
            "delete",
            _delete,
            "Deleted {count:,} users.",
            question="Delete {count} VPN users?",
            warning="Their accounts and credentials go for good; this cannot be undone.",
        ),
    )
}


@dataclass
class BulkStep:
    """Where a bulk request leads: a page to show first (question or edit form), or a result."""

    action: BulkAction
    count: int = 0
    stamp: str = ""
    form: BulkEditForm | None = None
    message: str = ""
    error: str = ""

    @property
    def ask(self) -> bool:
        """Show the confirmation (or the edit form again, with its errors)."""
        return not self.message and not self.error

    @property
    def question(self) -> str:
        return self.action.question.format(count=f"{self.count:,}")


def bulk_step(
    action: BulkAction,
    data: Mapping[str, Any],
    users: QuerySet[VpnUser],
    *,
    actor: User | None,
    selection: str,
) -> BulkStep:
    """Ask first, or validate and run: the one sequence behind the page's and the admin's bulk actions.

    `data` is the POST. The first POST of an asking action gets the question (with the
    count and stamp); the second carries `post=yes` and the stamp back.
    """
    stamp = str(data.get("stamp", ""))
    confirmed = data.get("post") == "yes" and bool(_STAMP.match(stamp))
    form = BulkEditForm(data if confirmed else None, servers=server_options()) if action.edits else None
    if action.asks_first and not confirmed:
        stamp = selection_stamp(users)
        count = int(stamp.split(":", 1)[0])
        if not count:
            return BulkStep(action, error="None of the selected users exist (any more); nothing was changed.")
        return BulkStep(action, count=count, stamp=stamp, form=form)
    step = BulkStep(action, count=int(stamp.split(":", 1)[0]) if confirmed else 0, stamp=stamp, form=form)
    if form is not None and not form.is_valid():
        return step
    edit = form.to_edit() if form is not None else None
    if _too_many(users):
        return _queue(step, users, actor=actor, selection=selection, edit=edit)
    try:
        count = action.run(
            actor=actor,
            users=users,
            selection=selection,
            stamp=stamp if action.asks_first else None,
            edit=edit,
        )
    except services.BulkRefused as exc:
        if form is not None and not isinstance(exc, services.SelectionChanged):
            form.add_error(None, str(exc))
            return step
        step.error = str(exc)
        return step
    step.message = action.done.format(count=count, summary=summarize(edit) if edit else "")
    return step


# --- bulk actions too big for a request -------------------------------------------------


def _too_many(users: QuerySet[VpnUser]) -> bool:
    """More users than a request may touch (counted no further than the limit)."""
    limit = settings.USERS_BULK_INLINE_MAX
    return users.order_by().values("pk")[: limit + 1].count() > limit


def _queue(
    step: BulkStep, users: QuerySet[VpnUser], *, actor: User | None, selection: str, edit: services.BulkEdit | None
) -> BulkStep:
    """Check now what can be checked fast, then hand the write to a queue worker."""
    from users.tasks import run_bulk_action

    try:
        if edit is not None:
            services.users_bulk_edit_check(users=users, edit=edit, stamp=step.stamp or None)
        elif step.action.asks_first:
            services.users_check_stamp(users=users, stamp=step.stamp)
    except services.BulkRefused as exc:
        if step.form is not None and not isinstance(exc, services.SelectionChanged):
            step.form.add_error(None, str(exc))
        else:
            step.error = str(exc)
        return step
    arguments = queue_arguments(step.action, users, actor=actor, selection=selection, stamp=step.stamp, edit=edit)
    job_id = run_bulk_action.defer(**arguments)
    count = f"{step.count:,} " if step.count else f"more than {settings.USERS_BULK_INLINE_MAX:,} "
    step.message = (
        f"Queued: “{step.action.label}” on {count}users runs in a queue worker (job {job_id}); "
        "the audit trail records the result."
    )
    return step


# The selection travels as a pickled Query (an admin changelist's query can be anything
# the admin builds); it is signed so a row written into the queue table by anyone without
# the secret key is refused before it is unpickled.
_QUERY_SIGNER = signing.Signer(salt="users.bulk.queued-query")


def queue_arguments(
    action: BulkAction,
    users: QuerySet[VpnUser],
    *,
    actor: User | None,
    selection: str,
    stamp: str,
    edit: services.BulkEdit | None,
) -> dict[str, Any]:
    """A bulk action as JSON for the queue: the selection's query itself (a filter, or the
    admin's changelist query), never a list of a million ids."""
    values = dict(edit.values) if edit else {}
    if isinstance(values.get("expire_at"), datetime.date):
        values["expire_at"] = values["expire_at"].isoformat()
    return {
        "action": action.name,
        "query": _QUERY_SIGNER.sign(base64.b64encode(pickle.dumps(users.query)).decode()),
        "stamp": stamp if action.asks_first else "",
        "edit": {"values": values, "add_days": edit.add_days, "add_bytes": edit.add_bytes} if edit else None,
        "actor_id": actor.pk if actor is not None else None,
        "selection": selection,
    }


def bulk_run_queued(
    *,
    job_id: int,
    action: str,
    query: str,
    stamp: str,
    edit: dict[str, Any] | None,
    actor_id: int | None,
    selection: str,
) -> str:
    """Run a queued bulk action once: one transaction that ends in the action's audit
    entry, or in a "refused" entry saying why; a retry after a commit finds the entry."""
    label = f"{selection} (queue job {job_id})"
    spec = BULK_ACTIONS[action]
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Two attempts of one job (a stalled worker that was not dead) run one at a time.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('users.run_bulk_action'), %s)", [job_id])
        if AuditEntry.objects.filter(target=services.TARGET, detail__selection=label).exists():
            return "done before (this is a retry)"
        try:
            payload = base64.b64decode(_QUERY_SIGNER.unsign(query))
        except signing.BadSignature:
            # Not written by queue_arguments with this deployment's key: never unpickle it.
            detail = {"selection": label, "action": action, "refused": "the queued selection's signature is invalid"}
            audit_record(actor=None, action="users_bulk_refused", target=services.TARGET, count=0, detail=detail)
            return "refused: the queued selection's signature is invalid"
        users = VpnUser.objects.all()
        # Signed above with SECRET_KEY: only this app's own queue_arguments could have written it.
        users.query = pickle.loads(payload)  # noqa: S301  # nosec B301
        actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
        bulk_edit = services.BulkEdit(**edit) if edit else None
        try:
            count = spec.run(actor=actor, users=users, selection=label, stamp=stamp or None, edit=bulk_edit)
        except services.BulkRefused as exc:
            detail = {"selection": label, "action": action, "refused": str(exc)}
            audit_record(actor=actor, action="users_bulk_refused", target=services.TARGET, count=0, detail=detail)
            return f"refused: {exc}"
    return spec.done.format(count=count, summary=summarize(bulk_edit) if bulk_edit else "")


def summarize(edit: services.BulkEdit) -> str:
    """The edit in an operator's words, for the message after it."""
    names = {pk: name for pk, name, _ in server_options()}
    parts: list[str] = []
    for name, value in edit.values.items():
        if name == "server_id":
            parts.append(f"server {names.get(value, value)}" if value else "no server")
        elif name == "data_limit":
            parts.append(f"data limit {filesizeformat(value)}" if value is not None else "unlimited data")
        elif name == "expire_at":
            parts.append(f"expires {value:%Y-%m-%d}" if value else "never expires")
        elif name == "reset_strategy":
            parts.append(f"reset {value}")
        elif name == "note":
            parts.append("note set" if value else "note cleared")
    if edit.add_days:
        parts.append(f"expiry +{edit.add_days} days")
    if edit.add_bytes:
        parts.append(f"data limit +{filesizeformat(edit.add_bytes)}")
    return ", ".join(parts)
