from __future__ import annotations

from django.urls import path

from users import views

app_name = "users"

urlpatterns = [
    path("", views.user_list, name="list"),
    path("stats/", views.user_stats, name="stats"),
    path("bulk/", views.user_bulk, name="bulk"),
    path("new/", views.user_create, name="create"),
    path("import/", views.user_import, name="import"),
    path("export.csv", views.user_export, name="export"),
    path("<int:pk>/", views.user_detail_view, name="detail"),
    path("<int:pk>/credentials/", views.user_reveal_credentials, name="credentials"),
]
