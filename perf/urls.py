from __future__ import annotations

from django.urls import include, path

from perf import views

app_name = "perf"

# One naming style: perf:<section>, perf:<section>-<action>.
urlpatterns = [
    path("", views.index, name="index"),
    path("cache/", include("perf.cache.urls")),
    path("memory/", include("perf.memory.urls")),
]
