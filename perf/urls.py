from __future__ import annotations

from django.urls import include, path

from perf import views

app_name = "perf"

# The cache pages and the memory pages each keep their own URL module.
urlpatterns = [
    path("", views.index, name="index"),
    path("cache/", include("perf.cache.urls")),
    path("memory/", include("perf.urls_memory")),
]
