"""`/sub/<token>/`: the public subscription URL (included at the site root, no login)."""

from __future__ import annotations

from django.urls import path

from users.subscriptions import views

app_name = "subscriptions"

urlpatterns = [
    # <path:> so /sub/<token>, /sub/<token>/ and any longer path reach the same lookup and
    # the same 404: the URL's shape says nothing about whether a token exists.
    path("<path:token>", views.subscription, name="subscription"),
]
