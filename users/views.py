"""The users pages: list (search, filters, pages, bulk actions), one user, CSV in and out."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpResponse, HttpResponseBase, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from perf.cache import tagged_cache
from users import services
from users.bulk import BULK_ACTIONS, bulk_step
from users.csv_io import csv_lines, parse_users_csv
from users.forms import (
    FILTER_FIELDS,
    BulkSelectionForm,
    ImportForm,
    UserForm,
    parse_filter,
    parse_ordering,
    parse_page,
)
from users.models import Protocol, Status, VpnUser
from users.selectors import (
    CACHE_TIMEOUT,
    ORDERINGS,
    SearchRefused,
    credentials_of,
    export_rows,
    filtered_users,
    selection_queryset,
    server_choices,
    server_options,
    user_detail,
    users_page,
    users_stats,
)
from vpnadmin.audit import audit_record
from vpnadmin.http import AuthedHttpRequest, bounded_stream, render_page_or_partial, wants_partial

if TYPE_CHECKING:
    from django.contrib.auth.models import User

VIEW = "users.view_vpnuser"
ADD = "users.add_vpnuser"
CHANGE = "users.change_vpnuser"
DELETE = "users.delete_vpnuser"


def _filter_query(data: QueryDict) -> dict[str, str]:
    """The filter part of a query string, to carry into page links, export and bulk forms."""
    return {name: str(data.get(name)) for name in (*FILTER_FIELDS, "ordering") if data.get(name)}


def _get_user_for(request: AuthedHttpRequest, pk: int, *, with_credentials: bool = False) -> VpnUser:
    user = user_detail(pk, with_credentials=with_credentials)
    if user is None:
        raise Http404("No such VPN user.")
    return user


@require_GET
@permission_required(VIEW, raise_exception=True)
def user_list(request: AuthedHttpRequest) -> HttpResponse:
    """The list page, or its results for an htmx swap.

    Everything below the top bar is decided by the query string and the operator's
    permissions, so it is cached as one rendered fragment under those (tags `users` and
    `servers`): a warm request is the session, the user and one cache read. The CSRF
    token of the bulk form sits outside the fragment (users/list.html).
    """
    partial = wants_partial(request)
    perms = {
        "can_change": request.user.has_perm(CHANGE),
        "can_delete": request.user.has_perm(DELETE),
        "can_add": request.user.has_perm(ADD),
        "bulk_actions": [
            (name, action.label)
            for name, action in BULK_ACTIONS.items()
            if request.user.has_perm(f"users.{action.permission}_vpnuser")
        ],
    }

    def content() -> str:
        html, complete = _list_content(request, partial=partial, perms=perms)
        if not complete:
            raise _NotCached(html)
        return html

    try:
        if not settings.USERS_CACHE_READS:
            raise _NotCached(_list_content(request, partial=partial, perms=perms)[0])
        vary = json.dumps([partial, perms, request.get_full_path()], sort_keys=True)
        key = f"users:list-html:{hashlib.sha256(vary.encode()).hexdigest()[:32]}"
        html = tagged_cache().get_or_set(key, content, CACHE_TIMEOUT, tags=["users", "servers"])
    except _NotCached as answer:
        html = answer.html
    # The full page adds only the layout around content our own templates rendered (autoescaped there).
    content_html = mark_safe(html)  # noqa: S308  # nosec B308 B703
    response = HttpResponse(html) if partial else render(request, "users/list.html", {"content": content_html})
    # Caches must not serve the partial to a full-page request or the other way round.
    response.headers["Vary"] = "HX-Request"
    return response


class _NotCached(Exception):
    """A rendering that must not be stored: a refused or timed-out read is worth trying again."""

    def __init__(self, html: str) -> None:
        super().__init__("not cached")
        self.html = html


def _list_content(request: AuthedHttpRequest, *, partial: bool, perms: dict[str, Any]) -> tuple[str, bool]:
    """The rendered content and whether it may be cached (not when the read was refused)."""
    flt, notes = parse_filter(request.GET)
    ordering, ordering_note = parse_ordering(request.GET.get("ordering"))
    page_number, page_note = parse_page(request.GET.get("page"))
    notes += [note for note in (ordering_note, page_note) if note]
    base = _filter_query(request.GET)
    if ordering_note:
        base.pop("ordering", None)
    try:
        page = users_page(
            flt,
            ordering=ordering,
            after=request.GET.get("after", ""),
            before=request.GET.get("before", ""),
            last=request.GET.get("last") == "1",
            page=page_number,
        )
    except SearchRefused as exc:
        notes.append(str(exc))
        page = None
    if page is not None:
        notes += page.notes
        if page.ordering != ordering:
            base["ordering"] = page.ordering  # the next pages keep the order this one chose
    context = {
        **perms,
        "page": page,
        "notes": notes,
        "partial": partial,
        "filter_form": _filter_form_initial(request.GET),
        "orderings": ORDERINGS,
        "ordering": page.ordering if page else ordering,
        "query": urlencode(base),
        "next_query": urlencode({**base, **page.next_params}) if page and page.has_next else "",
        "previous_query": urlencode({**base, **page.previous_params}) if page and page.has_previous else "",
        "last_query": urlencode({**base, "last": "1"}) if page and ORDERINGS[page.ordering].keyset else "",
        "filter_items": sorted(_filter_query(request.GET).items()) if not ordering_note else sorted(base.items()),
        "status_choices": Status.choices,
        "protocol_choices": Protocol.choices,
        "servers": [] if partial else server_choices(),
    }
    template = "users/list_content.html#results" if partial else "users/list_content.html"
    return render_to_string(template, context), page is not None


def _filter_form_initial(data: QueryDict) -> dict[str, str]:
    return {name: data.get(name, "") for name in FILTER_FIELDS}


@require_GET
@permission_required(VIEW, raise_exception=True)
def user_stats(request: AuthedHttpRequest) -> HttpResponse:
    return render(request, "users/stats.html", {"stats": users_stats()})


@require_POST
@permission_required(VIEW, raise_exception=True)
def user_bulk(request: AuthedHttpRequest) -> HttpResponse:
    """One bulk action (users.bulk) over the ticked rows or every user matching the posted filter."""
    form = BulkSelectionForm(request.POST, actions=[(name, action.label) for name, action in BULK_ACTIONS.items()])
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return redirect(_list_url(request.POST))
    action = BULK_ACTIONS[form.cleaned_data["action"]]
    if not request.user.has_perm(f"users.{action.permission}_vpnuser"):
        raise PermissionDenied
    try:
        users, label = _bulk_selection(request.POST, form.cleaned_data)
    except SearchRefused as exc:
        messages.error(request, str(exc))
        return redirect(_list_url(request.POST))
    step = bulk_step(action, request.POST, users, actor=request.user, selection=label)
    if step.ask:
        carried = {**_filter_query(request.POST), "action": action.name, "ids": request.POST.get("ids", "")}
        if form.cleaned_data["select_all"]:
            carried["select_all"] = "on"
        context = {"step": step, "carried": carried, "label": label, "back": _list_url(request.POST)}
        status = 400 if step.form is not None and step.form.is_bound else 200
        return render(request, "users/bulk_confirm.html", context, status=status)
    if step.error:
        messages.error(request, step.error)
    else:
        messages.success(request, step.message)
    return redirect(_list_url(request.POST))


def _bulk_selection(data: QueryDict, cleaned: dict[str, Any]) -> tuple[QuerySet[VpnUser], str]:
    """The users a bulk action is for and how the audit entry names them; SearchRefused for a bad filter."""
    if cleaned["select_all"]:
        flt, errors = parse_filter(data)
        if errors:
            raise SearchRefused(" ".join(errors))
        return selection_queryset(flt), flt.describe()
    ids = cleaned["ids"]
    return VpnUser.objects.filter(pk__in=ids), f"{len(ids)} selected"


def _list_url(data: QueryDict) -> str:
    query = urlencode(_filter_query(data))
    return "/users/" + (f"?{query}" if query else "")


def _apply_service_errors(form: UserForm, errors: list[services.RowError]) -> None:
    for error in errors:
        name = error.field if error.field in form.fields else None
        form.add_error(name, f"{error.field.replace('_', ' ').capitalize()} {error.message}.")


@require_http_methods(["GET", "POST"])
@permission_required(ADD, raise_exception=True)
def user_create(request: AuthedHttpRequest) -> HttpResponse:
    form = UserForm(request.POST or None, servers=server_options())
    if request.method == "POST" and form.is_valid():
        result = services.users_create_batch(actor=request.user, rows=[form.values()])
        if result.ok:
            messages.success(request, f"Created {form.cleaned_data['username'].lower()}.")
            return redirect("users:detail", result.ids[0])
        _apply_service_errors(form, result.errors)
    status = 400 if request.method == "POST" else 200
    return render(request, "users/form.html", {"form": form, "creating": True}, status=status)


@require_http_methods(["GET", "POST"])
@permission_required(VIEW, raise_exception=True)
def user_detail_view(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    user = _get_user_for(request, pk)
    can_change = request.user.has_perm(CHANGE)
    form = _detail_form(request, user)
    if request.method == "POST":
        if not can_change:
            raise PermissionDenied
        if form.is_valid():
            values = form.values()
            values.pop("username")
            if values["protocol"] == user.protocol:
                values.pop("protocol")  # same protocol: keep the credentials
            result = services.users_update_batch(actor=request.user, changes={user.pk: values}, action="users_edit")
            if result.ok:
                messages.success(request, f"Saved {user.username}.")
                return redirect("users:detail", user.pk)
            _apply_service_errors(form, result.errors)
    context = {"user_obj": user, "form": form, "can_change": can_change}
    return render(request, "users/detail.html", context, status=400 if request.method == "POST" else 200)


def _detail_form(request: AuthedHttpRequest, user: VpnUser) -> UserForm:
    initial = {
        "username": user.username,
        "email": user.email,
        "protocol": user.protocol,
        "data_limit": "" if user.data_limit is None else str(user.data_limit),
        "reset_strategy": user.reset_strategy,
        "expire_at": timezone.localtime(user.expire_at).date() if user.expire_at else None,
        "on_hold_days": user.on_hold_days,
        "is_active": user.is_active,
        "server": str(user.server_id or ""),
        "note": user.note,
    }
    # The edit form is bound only to an edit's own POST (a reveal posts no fields).
    match = request.resolver_match
    data = request.POST if request.method == "POST" and match is not None and match.url_name == "detail" else None
    form = UserForm(data, initial=initial, servers=server_options())
    form.fields["username"].disabled = True
    return form


@never_cache
@require_POST
@permission_required(CHANGE, raise_exception=True)
def user_reveal_credentials(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """The credentials of one user, on an explicit POST by someone who may change users; audited.

    An htmx click swaps in the credentials only; the plain form (no script) answers the
    whole user page with them shown, in one request. Never a redirect: the secrets must
    not land on a URL a browser keeps. The user and its credentials are one read.
    """
    user = _get_user_for(request, pk, with_credentials=True)
    audit_record(
        actor=request.user, action="users_reveal_credentials", target=services.TARGET, count=1, object_ids=[pk]
    )
    credentials = credentials_of(user)
    if wants_partial(request):
        return render(request, "users/credentials.html", {"credentials": credentials, "user_obj": user})
    context = {"user_obj": user, "form": _detail_form(request, user), "can_change": True, "credentials": credentials}
    return render(request, "users/detail.html", context)


@require_http_methods(["GET", "POST"])
@permission_required(ADD, raise_exception=True)
def user_import(request: AuthedHttpRequest) -> HttpResponse:
    """Upload a CSV; "check" lists every bad row by line, "import" writes all of them or none."""
    form = ImportForm(request.POST or None, request.FILES or None)
    context: dict[str, Any] = {"form": form, "max_rows": settings.USERS_IMPORT_MAX_ROWS}
    status = 200
    if request.method == "POST" and form.is_valid():
        applying = request.POST.get("step") == "import"
        report = _import_report(form, applying=applying, actor=request.user)
        context.update(report, checked=True, applied=applying)
        if report["error_count"]:
            status = 400 if applying and not report["written"] else 200
    elif request.method == "POST":
        status = 400
    if wants_partial(request):
        status = 200  # htmx swaps only 2xx answers; the report itself says what went wrong
    return render_page_or_partial(request, "users/import.html", context, "report", status=status)


def _import_report(form: ImportForm, *, applying: bool, actor: User) -> dict[str, Any]:
    """Parse the upload, then check every row or write them (all, or the good ones when asked)."""
    parsed = parse_users_csv(form.cleaned_data["file"], max_rows=settings.USERS_IMPORT_MAX_ROWS)
    errors = list(parsed.errors)
    written = 0
    if not parsed.fatal and parsed.rows:
        write_good = form.cleaned_data["write_good_rows"]
        if applying and (not errors or write_good):
            result = services.users_create_batch(
                actor=actor, rows=parsed.rows, positions=parsed.lines, write_good_rows=write_good
            )
            written, row_errors = result.written, result.errors
        else:
            _, row_errors = services.validate_new_users(parsed.rows, positions=parsed.lines)
        errors = sorted(errors + row_errors, key=lambda e: e.position)
    return {
        "rows": len(parsed.rows),
        "errors": errors[:1000],
        "error_count": len(errors),
        "bad_lines": len({e.position for e in errors if e.position}),
        "written": written,
        "fatal": parsed.fatal,
    }


@require_GET
@permission_required(VIEW, raise_exception=True)
def user_export(request: AuthedHttpRequest) -> HttpResponseBase:
    """The current filter as CSV, streamed from a server-side cursor; never the credentials."""
    flt, errors = parse_filter(request.GET)
    if errors:
        return HttpResponse("\n".join(errors), status=400, content_type="text/plain; charset=utf-8")
    try:
        filtered_users(flt)
    except SearchRefused as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    lines = bounded_stream(csv_lines(export_rows(flt)), seconds=settings.EXPORT_TIME_LIMIT, what="export")
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="vpn-users-{stamp}.csv"'
    return response
