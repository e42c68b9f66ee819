"""The public subscription URL and the operator's subscription and delivery actions.

`/sub/<token>/` needs no login. It is rate limited per client address before anything
else, and every token, well-formed or not, takes the same path to the same 404 as any
unknown URL. Operator views sit under /users/ behind the change permission; each reveal,
download, rotation, revocation and export leaves an audit entry.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from users.delivery.formats import base64_links, clash_yaml, links_text, singbox_json
from users.delivery.material import delivery_items, user_delivery, user_wireguard_conf
from users.delivery.profiles import Unavailable, WireGuardProfile
from users.delivery.qr import qr_svg
from users.delivery.wireguard import conf_filename, wireguard_conf
from users.forms import FILTER_FIELDS, parse_filter
from users.models import Protocol, VpnUser
from users.selectors import SearchRefused, selection_queryset
from users.subscriptions import negotiate, ratelimit
from users.subscriptions.export import issued_csv, subscription_url
from users.subscriptions.forms import BULK_CHOICES
from users.subscriptions.selectors import (
    SubscriptionData,
    cached_subscription,
    subscription_for_token,
    subscription_state,
)
from users.subscriptions.services import (
    TARGET,
    subscription_rotate,
    subscriptions_issue,
    subscriptions_revoke,
)
from vpnadmin.audit import audit_record
from vpnadmin.http import AuthedHttpRequest

CHANGE = "users.change_vpnuser"
# Where users/subscriptions/urls.py is included (vpnadmin/urls.py): the fast path matches it.
SUB_PREFIX = "/sub/"
MAX_SELECTED_IDS = 10_000


# --- the public URL ------------------------------------------------------------------


def _private(response: HttpResponse) -> HttpResponse:
    """A URL that is a secret: never cached by anyone, never sent on as a Referer, never indexed."""
    response["Cache-Control"] = "no-store, private"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Vary"] = "User-Agent, Accept"
    return response


def _userinfo(data: SubscriptionData) -> str:
    # Only a total is counted per user (no up/down split): it is reported as download.
    return f"upload=0; download={data.used}; total={data.limit or 0}; expire={data.expire_epoch}"


def _client_headers(response: HttpResponse, request: HttpRequest, data: SubscriptionData, token: str) -> None:
    response["Subscription-Userinfo"] = _userinfo(data)
    response["Profile-Update-Interval"] = str(settings.SUBSCRIPTION_UPDATE_INTERVAL_HOURS)
    title = f"{settings.SUBSCRIPTION_PROFILE_TITLE} · {data.username}"
    response["Profile-Title"] = "base64:" + base64.b64encode(title.encode()).decode()
    response["Profile-Web-Page-Url"] = subscription_url(request, token)


_MACHINE = {
    negotiate.BASE64: (base64_links, "text/plain; charset=utf-8", "txt"),
    negotiate.LINKS: (links_text, "text/plain; charset=utf-8", "txt"),
    negotiate.SINGBOX: (singbox_json, "application/json", "json"),
    negotiate.CLASH: (clash_yaml, "text/yaml; charset=utf-8", "yaml"),
}


def _text(message: str, status: int) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _count_and_peek(request: HttpRequest, token: str) -> tuple[ratelimit.Verdict, SubscriptionData | None]:
    """Count the request and read the cache. The count goes out first and its answer is
    read after the cache read: one round trip of waiting for both, and no SQL."""
    pending = ratelimit.start(request)
    try:
        data = cached_subscription(token)
    finally:
        verdict = pending.verdict()
    return verdict, data


def _too_many(verdict: ratelimit.Verdict) -> HttpResponse:
    response = _text("Too many requests from this address. Try again later.", 429)
    response["Retry-After"] = str(verdict.retry_after)
    return _private(response)


def _requested_format(request: HttpRequest) -> str | None:
    return negotiate.choose_format(
        request.GET.get("format"), request.headers.get("User-Agent", ""), request.headers.get("Accept", "")
    )


def _machine_response(request: HttpRequest, data: SubscriptionData, token: str, fmt: str) -> HttpResponse:
    render_body, content_type, extension = _MACHINE[fmt]
    response = HttpResponse(render_body(data.profiles), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{data.username}.{extension}"'
    _client_headers(response, request, data, token)
    return _private(response)


def answer_warm(request: HttpRequest) -> HttpResponse | None:
    """A VPN app's poll answered from the cache, or None to let the full stack and the view
    handle it (HTML, .conf, unknown formats, cache misses). Called by the fast-path
    middleware before sessions, auth and CSRF, none of which an app's poll needs; it leaves
    its count and its cache miss on the request so the view does neither twice."""
    token = request.path_info[len(SUB_PREFIX) :]
    token = token[:-1] if token.endswith("/") else token
    fmt = _requested_format(request)
    if fmt not in _MACHINE or request.method not in ("GET", "HEAD") or not token:
        return None
    verdict, data = _count_and_peek(request, token)
    request.subscription_counted = verdict  # type: ignore[attr-defined]  # read by the view below
    if not verdict.allowed:
        return _too_many(verdict)
    if data is None:
        return None
    return _machine_response(request, data, token, fmt)


@login_not_required
@require_safe
def subscription(request: HttpRequest, token: str) -> HttpResponse:
    # /sub/<token>/ and /sub/<token> both; anything else is looked up as it is (and not found).
    token = token[:-1] if token.endswith("/") else token
    counted: ratelimit.Verdict | None = getattr(request, "subscription_counted", None)
    if counted is None:
        verdict, data = _count_and_peek(request, token)
    else:
        verdict, data = counted, None  # the fast path counted it and found no cached answer
    if not verdict.allowed:
        return _too_many(verdict)
    if data is None:
        # PostgreSQL is asked only once the limit said yes.
        data = subscription_for_token(token)
    if data is None:
        raise Http404  # Django's own 404 page, byte for byte the one of any unknown URL
    fmt = _requested_format(request)
    if fmt is None:
        names = ", ".join(sorted(set(negotiate.FORMAT_NAMES)))
        return _private(_text(f"Unknown format {request.GET.get('format', '')[:40]!r}. Use one of: {names}.", 400))
    if fmt in _MACHINE:
        return _machine_response(request, data, token, fmt)
    response = subscription_page(request, data, token) if fmt == negotiate.HTML else _wireguard_file(data)
    _client_headers(response, request, data, token)
    return _private(response)


def _wireguard_file(data: SubscriptionData) -> HttpResponse:
    if data.protocol != Protocol.WIREGUARD:
        return _text("This subscription is not a WireGuard one: there is no .conf file.", 400)
    profile = next((p for p in data.profiles if isinstance(p, WireGuardProfile)), None)
    if profile is None:
        return _text(data.reason or "There is no working configuration for this subscription.", 403)
    response = HttpResponse(wireguard_conf(profile), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{conf_filename(profile.name)}"'
    return response


def subscription_page(
    request: HttpRequest, data: SubscriptionData, token: str, *, with_qr: bool = True
) -> HttpResponse:
    """The human page; `with_qr=False` is the same page without its QR codes (the benchmark's baseline)."""
    url = subscription_url(request, token)
    items = [item for profile in data.profiles for item in delivery_items(profile, with_qr=with_qr)]
    context = {
        "data": data,
        "items": items,
        "subscription_url": url,
        "subscription_qr": qr_svg(url, title="Subscription URL") if with_qr else "",
        "remaining": None if data.limit is None else max(data.limit - data.used, 0),
        "percent": min(100, round(100 * data.used / data.limit)) if data.limit else None,
        "wireguard_url": f"{url}?format=wireguard" if data.protocol == Protocol.WIREGUARD and data.profiles else "",
    }
    return render(request, "users/subscription.html", context)


# --- one user: reveal, .conf, rotate, revoke ------------------------------------------


def _user_or_404(pk: int) -> VpnUser:
    user = VpnUser.objects.filter(pk=pk).only("pk", "username", "protocol").first()
    if user is None:
        raise Http404("No such VPN user.")
    return user


@never_cache
@require_POST
@permission_required(CHANGE, raise_exception=True)
def user_delivery_reveal(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """Links, QR codes and the .conf of one user, on an explicit POST; audited like credentials."""
    delivery = user_delivery(pk)
    if delivery is None:
        raise Http404("No such VPN user.")
    audit_record(actor=request.user, action="users_reveal_delivery", target=TARGET, count=1, object_ids=[pk])
    context = {"delivery": delivery, "user_obj": delivery.user, "subscription": subscription_state(pk)}
    return render(request, "users/_delivery.html", context)


@never_cache
@require_POST
@permission_required(CHANGE, raise_exception=True)
def user_wireguard_download(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    result = user_wireguard_conf(pk)
    if result is None:
        raise Http404("No such VPN user.")
    if isinstance(result, Unavailable):
        return _text(result.reason, 409)
    filename, conf = result
    audit_record(actor=request.user, action="users_download_wireguard_conf", target=TARGET, count=1, object_ids=[pk])
    response = HttpResponse(conf, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@never_cache
@require_POST
@permission_required(CHANGE, raise_exception=True)
def user_subscription_rotate(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """Issue a new subscription URL for one user (the old one stops at once); shown once."""
    user = _user_or_404(pk)
    issued = subscription_rotate(actor=request.user, user_id=pk)
    if issued is None:
        raise Http404("No such VPN user.")
    url = subscription_url(request, issued.token)
    context = {
        "user_obj": user,
        "subscription": subscription_state(pk),
        "new_url": url,
        "new_qr": qr_svg(url, title="Subscription URL"),
    }
    return render(request, "users/_delivery_subscription.html", context)


@never_cache
@require_POST
@permission_required(CHANGE, raise_exception=True)
def user_subscription_revoke(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    user = _user_or_404(pk)
    count = subscriptions_revoke(actor=request.user, users=VpnUser.objects.filter(pk=pk), selection=f"user {pk}")
    context = {"user_obj": user, "subscription": subscription_state(pk), "revoked": bool(count)}
    return render(request, "users/_delivery_subscription.html", context)


# --- many users: revoke, issue as CSV -----------------------------------------------------


def _selection(data: QueryDict) -> tuple[Any, str, list[str]]:
    """The users a bulk form means: its ticked ids, or everything matching its filter."""
    if data.get("select_all") == "on":
        flt, errors = parse_filter(data)
        if errors:
            return None, "", errors
        try:
            return selection_queryset(flt), flt.describe(), []
        except SearchRefused as exc:
            return None, "", [str(exc)]
    raw = [part for part in data.get("ids", "").split(",") if part.strip()]
    if not raw:
        return None, "", ["Select at least one user."]
    if len(raw) > MAX_SELECTED_IDS:
        return None, "", [f"Select at most {MAX_SELECTED_IDS:,} rows, or use “all matching”."]
    try:
        ids = sorted({int(part) for part in raw})
    except ValueError:
        return None, "", ["The selection is not a list of user ids."]
    return VpnUser.objects.filter(pk__in=ids), f"{len(ids)} selected", []


def _back(data: QueryDict) -> str:
    """The users list with the filter the bulk form carried."""
    query = urlencode({name: data[name] for name in (*FILTER_FIELDS, "ordering") if data.get(name)})
    return "/users/" + (f"?{query}" if query else "")


@never_cache
@require_POST
@permission_required(CHANGE, raise_exception=True)
def subscriptions_bulk(request: AuthedHttpRequest) -> HttpResponse:
    """Revoke, or issue as a CSV download, the subscription URLs of a selection or a filter.

    The first POST shows what will happen and to how many users; the second (confirmed)
    does it. Issuing is bounded by SUBSCRIPTION_EXPORT_MAX_ROWS: the new tokens exist
    only in this one answer.
    """
    action = request.POST.get("subscription_action", "")
    if action not in BULK_CHOICES:
        messages.error(request, "Choose what to do with the subscription URLs.")
        return redirect(_back(request.POST))
    users, label, errors = _selection(request.POST)
    if errors:
        for error in errors:
            messages.error(request, error)
        return redirect(_back(request.POST))
    limit = settings.SUBSCRIPTION_EXPORT_MAX_ROWS
    if request.POST.get("confirmed") != "1":
        target = users
        if action == "issue_missing":
            target = users.filter(subscription__isnull=True)
        elif action == "revoke":
            target = users.filter(subscription__isnull=False)
        count = target.order_by().count()
        context = {
            "action": action,
            "action_label": BULK_CHOICES[action],
            "count": count,
            "limit": limit,
            "too_many": action != "revoke" and count > limit,
            "label": label,
            "post": request.POST,
            "back": _back(request.POST),
        }
        return render(request, "users/subscriptions_confirm.html", context)
    if action == "revoke":
        count = subscriptions_revoke(actor=request.user, users=users, selection=label)
        messages.success(request, f"Revoked the subscription URLs of {count:,} users.")
        return redirect(_back(request.POST))
    only_missing = action == "issue_missing"
    candidates = users.filter(subscription__isnull=True) if only_missing else users
    if candidates.order_by().count() > limit:
        messages.error(
            request, f"That is more than {limit:,} users: narrow the filter (the URLs come back in one download)."
        )
        return redirect(_back(request.POST))
    issued = subscriptions_issue(actor=request.user, users=users, only_missing=only_missing, selection=label)
    return issued_csv(request, issued)
