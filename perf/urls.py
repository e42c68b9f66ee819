from __future__ import annotations

app_name = "perf"

urlpatterns: list = []
