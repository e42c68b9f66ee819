from __future__ import annotations

app_name = "containers"

urlpatterns: list = []
