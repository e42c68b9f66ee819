from __future__ import annotations

app_name = "users"

urlpatterns: list = []
