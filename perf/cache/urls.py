"""/perf/cache/...: included by perf/urls.py under the "perf" namespace (perf:cache, perf:cache-*)."""

from __future__ import annotations

from django.urls import path

from perf.cache import views

urlpatterns = [
    path("", views.cache_page, name="cache"),
    path("invalidate-tag/", views.invalidate_tag, name="cache-invalidate-tag"),
    path("invalidate-pattern/", views.invalidate_pattern, name="cache-invalidate-pattern"),
    path("warm/", views.warm, name="cache-warm"),
]
