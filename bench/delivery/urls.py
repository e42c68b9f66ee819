"""vpnadmin's URLs plus /bench-noqr/<token>/: the same subscription page, same data and
template, with the QR codes left out; the baseline of "a page with three QR codes"."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path

from users.subscriptions.selectors import subscription_for_token
from users.subscriptions.views import subscription_page
from vpnadmin.urls import urlpatterns as app_urlpatterns


@login_not_required
def page_without_qr(request: HttpRequest, token: str) -> HttpResponse:
    data = subscription_for_token(token)
    if data is None:
        raise Http404
    return subscription_page(request, data, token, with_qr=False)


urlpatterns = [path("bench-noqr/<str:token>/", page_without_qr), *app_urlpatterns]
