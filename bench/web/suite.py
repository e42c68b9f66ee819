"""The web shell: vpnadmin's pages under gunicorn against a bare Django view."""

from __future__ import annotations

from bench.harness import Row, gunicorn, http_get, interleaved_medians, login_session_cookie

REQUESTS_PER_ROUND = 50


def run() -> list[Row]:
    cookies = login_session_cookie()
    with gunicorn() as app, gunicorn("bench.web.bare:application", env={"DJANGO_SETTINGS_MODULE": ""}) as bare:

        def batch(url: str, with_cookies: bool = False) -> None:
            for _ in range(REQUESTS_PER_ROUND):
                http_get(url, cookies=cookies if with_cookies else None)

        medians = interleaved_medians(
            {
                "bare": lambda: batch(bare.url + "/"),
                "login": lambda: batch(app.url + "/login/"),
                "dashboard": lambda: batch(app.url + "/", with_cookies=True),
                "healthz": lambda: batch(app.url + "/healthz"),
            },
            rounds=5,
        )
    per = {name: value / REQUESTS_PER_ROUND for name, value in medians.items()}
    baseline = "bare Django view, no middleware, same gunicorn setup"
    return [
        Row.compare("login page: full middleware stack + template", per["login"], baseline, per["bare"], "<= 4"),
        Row.compare("dashboard (logged in, live component checks)", per["dashboard"], baseline, per["bare"], "<= 10"),
        Row.compare("/healthz (database, Redis, Docker checks)", per["healthz"], baseline, per["bare"], "<= 8"),
    ]
