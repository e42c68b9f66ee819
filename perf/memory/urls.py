"""/perf/memory/...: included by perf/urls.py under the "perf" namespace (perf:memory, perf:memory-*)."""

from __future__ import annotations

from django.urls import path

from perf.memory import views

urlpatterns = [
    path("", views.memory_page, name="memory"),
    path("tracemalloc/", views.tracemalloc_window, name="memory-tracemalloc"),
    path("gc/", views.garbage_collect, name="memory-gc"),
]
