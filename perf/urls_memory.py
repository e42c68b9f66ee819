from __future__ import annotations

from django.urls import path

from perf import views_memory

# Included under /perf/memory/ by perf/urls.py (app namespace "perf").
urlpatterns = [
    path("", views_memory.memory_page, name="memory"),
    path("tracemalloc/", views_memory.tracemalloc_window, name="memory-tracemalloc"),
    path("gc/", views_memory.garbage_collect, name="memory-gc"),
]
