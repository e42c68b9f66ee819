from __future__ import annotations

from django.urls import path

from perf import views_cache

urlpatterns = [
    path("", views_cache.cache_page, name="cache"),
    path("invalidate-tag/", views_cache.invalidate_tag, name="cache_invalidate_tag"),
    path("invalidate-pattern/", views_cache.invalidate_pattern, name="cache_invalidate_pattern"),
    path("warm/", views_cache.warm, name="cache_warm"),
]
