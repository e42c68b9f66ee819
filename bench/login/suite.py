"""A login through the limiter (django-axes) against the same login without it.

Each login is what a browser does: GET /login/ (CSRF cookie and token), then POST the
credentials and follow nothing (302). Password hashing dominates both; the limiter adds
its lookups of attempts by username and address and its bookkeeping on success.
"""

from __future__ import annotations

import http.cookiejar
import re
import urllib.parse
import urllib.request

from bench.harness import Row, gunicorn, interleaved_medians

LOGINS_PER_ROUND = 5
USERNAME = "bench-login"
PASSWORD = "bench login password 12345"  # a throwaway account in the bench database


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _login(base: str) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    with opener.open(f"{base}/login/", timeout=30) as response:
        page = response.read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if match is None:
        raise RuntimeError("the login page has no CSRF token")
    data = urllib.parse.urlencode(
        {"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": match.group(1)}
    ).encode()
    # Loopback only: the URL is the gunicorn this suite started.
    request = urllib.request.Request(f"{base}/login/", data=data, headers={"Referer": f"{base}/login/"})  # noqa: S310  # nosec B310
    try:
        opener.open(request, timeout=30)
    except urllib.error.HTTPError as answer:  # the 302 to the dashboard, not followed
        if answer.code != 302:
            raise RuntimeError(f"login answered {answer.code}") from None
        return
    raise RuntimeError("login did not redirect: wrong password or a lockout")


def run() -> list[Row]:
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username=USERNAME, defaults={"is_staff": True})
    user.set_password(PASSWORD)
    user.save()
    with gunicorn() as limited, gunicorn(env={"DJANGO_SETTINGS_MODULE": "bench.login.settings"}) as bare:

        def batch(base: str) -> None:
            for _ in range(LOGINS_PER_ROUND):
                _login(base)

        medians = interleaved_medians({"limited": lambda: batch(limited.url), "bare": lambda: batch(bare.url)})
    per = {name: value / LOGINS_PER_ROUND for name, value in medians.items()}
    return [
        Row.compare(
            "login (GET form + POST) through django-axes",
            per["limited"],
            "the same login, axes middleware and backend removed",
            per["bare"],
            "<= 1.2",
        )
    ]
