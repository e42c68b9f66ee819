from __future__ import annotations

from django.urls import path

from users import views
from users.subscriptions import views as subscription_views

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
    # What the user receives: links, QR codes, .conf, subscription URL (users/subscriptions).
    path("<int:pk>/delivery/", subscription_views.user_delivery_reveal, name="delivery"),
    path("<int:pk>/wireguard.conf", subscription_views.user_wireguard_download, name="delivery_conf"),
    path("<int:pk>/subscription/rotate/", subscription_views.user_subscription_rotate, name="subscription_rotate"),
    path("<int:pk>/subscription/revoke/", subscription_views.user_subscription_revoke, name="subscription_revoke"),
    path("subscriptions/bulk/", subscription_views.subscriptions_bulk, name="subscriptions_bulk"),
]
