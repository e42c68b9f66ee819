from __future__ import annotations

from django.urls import path

from containers import views, views_dataplane

app_name = "containers"

urlpatterns = [
    path("", views.server_list, name="servers"),
    path("batch/", views.server_batch, name="batch"),
    path("new/", views.server_new, name="server_new"),
    path("sync/", views.server_sync, name="sync"),
    path("stats/", views.stats_panel, name="stats"),
    path("jobs/<int:job_id>/", views.job_detail, name="job"),
    path("servers/<int:server_id>/", views_dataplane.server_detail, name="server_detail"),
    path("servers/<int:server_id>/apply/", views_dataplane.server_apply, name="server_apply"),
    path("dataplane/", views_dataplane.dataplane_summary, name="dataplane"),
    path("users/<int:user_id>/usage/", views_dataplane.user_usage, name="user_usage"),
    path("hosts/", views.host_list, name="hosts"),
    path("hosts/add-local/", views.host_add_local, name="host_add_local"),
    path("hosts/<int:host_id>/check/", views.host_check, name="host_check"),
    path("hosts/<int:host_id>/enable/", views.host_set_enabled, {"enabled": True}, name="host_enable"),
    path("hosts/<int:host_id>/disable/", views.host_set_enabled, {"enabled": False}, name="host_disable"),
]
