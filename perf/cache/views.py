"""/perf/cache/: live cache figures, and the actions staff with the permission may take."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from perf.cache.forms import InvalidatePatternForm, InvalidateTagForm
from perf.cache.selectors import cache_overview
from perf.cache.services import (
    CacheActionError,
    cache_count_pattern,
    cache_invalidate_pattern,
    cache_invalidate_tag,
    cache_warm,
)
from vpnadmin.http import AuthedHttpRequest, render_page_or_partial

MANAGE_CACHE = "vpnadmin.manage_cache"


def _can_manage(request: AuthedHttpRequest) -> bool:
    return request.user.is_staff and request.user.has_perm(MANAGE_CACHE)


def _require_manage(request: AuthedHttpRequest) -> None:
    if not _can_manage(request):
        raise PermissionDenied("Managing the cache needs the “Can invalidate and warm the cache” permission.")


def _page(
    request: AuthedHttpRequest,
    *,
    tag_form: InvalidateTagForm | None = None,
    pattern_form: InvalidatePatternForm | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "overview": cache_overview(),
        "can_manage": _can_manage(request),
        "tag_form": tag_form or InvalidateTagForm(),
        "pattern_form": pattern_form or InvalidatePatternForm(),
    }
    return render_page_or_partial(request, "perf/cache.html", context, "panel", status=status)


@require_GET
def cache_page(request: AuthedHttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
def invalidate_tag(request: AuthedHttpRequest) -> HttpResponse:
    _require_manage(request)
    form = InvalidateTagForm(request.POST)
    if not form.is_valid():
        return _page(request, tag_form=form, status=400)
    tag = form.cleaned_data["tag"]
    try:
        cache_invalidate_tag(actor=request.user, tag=tag)
    except CacheActionError as error:
        messages.error(request, f"Tag “{tag}” was not invalidated: {error}.")
    else:
        messages.success(request, f"Invalidated tag “{tag}”: every value carrying it is now a miss.")
    return redirect("perf:cache")


@require_POST
def invalidate_pattern(request: AuthedHttpRequest) -> HttpResponse:
    _require_manage(request)
    form = InvalidatePatternForm(request.POST)
    if not form.is_valid():
        return _page(request, pattern_form=form, status=400)
    pattern = form.cleaned_data["pattern"]
    if not form.cleaned_data["confirm"]:
        try:
            matching = cache_count_pattern(pattern=pattern)
        except CacheActionError as error:
            messages.error(request, f"Cannot count the keys matching “{pattern}”: {error}.")
            return redirect("perf:cache")
        return render(request, "perf/cache_confirm.html", {"pattern": pattern, "matching": matching})
    deleted = cache_invalidate_pattern(actor=request.user, pattern=pattern)
    messages.success(request, f"Deleted {deleted} key{'' if deleted == 1 else 's'} matching “{pattern}”.")
    return redirect("perf:cache")


@require_POST
def warm(request: AuthedHttpRequest) -> HttpResponse:
    _require_manage(request)
    report = cache_warm(actor=request.user)
    if report.failed:
        messages.warning(request, report.summary)
    else:
        messages.success(request, report.summary)
    return redirect("perf:cache")
