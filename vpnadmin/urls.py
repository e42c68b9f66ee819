from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from perf.memory.views import metrics
from vpnadmin import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("audit/", views.audit, name="audit"),
    path("account/sessions/", views.account_sessions, name="account_sessions"),
    path("account/logout-everywhere/", views.logout_everywhere, name="logout_everywhere"),
    path("staff/<int:pk>/logout-everywhere/", views.staff_logout_everywhere, name="staff_logout_everywhere"),
    path("metrics", metrics, name="metrics"),
    path("users/", include("users.urls")),
    # Public, no login: subscription URLs fetched by VPN apps (token in the path, rate limited).
    path("sub/", include("users.subscriptions.urls")),
    path("containers/", include("containers.urls")),
    path("perf/", include("perf.urls")),
    path("admin/", admin.site.urls),
]

# Branded error pages: no traceback, no settings (also with DEBUG off, the only mode served).
handler403 = "vpnadmin.views.permission_denied"
handler404 = "vpnadmin.views.page_not_found"
handler500 = "vpnadmin.views.server_error"
