from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from perf.views import healthz
from perf.views_memory import metrics
from vpnadmin import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("users/", include("users.urls")),
    path("containers/", include("containers.urls")),
    path("perf/", include("perf.urls")),
    path("admin/", admin.site.urls),
]
