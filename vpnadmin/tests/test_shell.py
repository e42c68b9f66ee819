"""The shell of the UI: login everywhere, the dashboard, CSRF."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_an_anonymous_visitor_is_sent_to_the_login_page() -> None:
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/")


PUBLIC_URL_NAMES = {"login", "healthz"}


def _every_url_without_arguments() -> list[tuple[str, str]]:
    """(name, path) of every URL pattern of the project that takes no argument."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found: list[tuple[str, str]] = []

    def walk(patterns: list, prefix: str, namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace == "admin":
                    continue  # the admin has its own login; checked below
                ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, prefix + str(pattern.pattern), ns)
            elif isinstance(pattern, URLPattern) and not pattern.pattern.regex.groupindex:
                route = prefix + str(pattern.pattern)
                if "<" not in route and "(" not in route:
                    found.append((f"{namespace}{pattern.name}", "/" + route.lstrip("^").rstrip("$")))

    walk(get_resolver().url_patterns, "", "")
    return found


@pytest.mark.parametrize(("name", "path"), _every_url_without_arguments())
def test_every_page_but_login_and_health_needs_a_login(name: str, path: str) -> None:
    response = Client().get(path)
    if name in PUBLIC_URL_NAMES:
        assert response.status_code != 302
    else:
        assert response.status_code == 302, f"{name} ({path}) is reachable without a login"
        assert response["Location"].startswith("/login/")


def test_the_admin_needs_a_login() -> None:
    response = Client().get("/admin/")
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_the_login_page_renders_for_anyone() -> None:
    response = Client().get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_the_printed_credentials_log_in_and_show_the_dashboard(owner_client: Client) -> None:
    response = owner_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    for section in ("Dashboard", "Users", "Containers", "Performance", "Admin"):
        assert section in body
    assert 'data-component="database"' in body
    assert 'data-component="cache"' in body


def test_the_dashboard_panel_alone_is_sent_to_htmx(owner_client: Client) -> None:
    response = owner_client.get("/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-component="database"' in body
    assert "<html" not in body
    assert "HX-Request" in response["Vary"]


def test_a_wrong_password_is_refused_with_a_message() -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("someone", password="a long enough secret 1")
    response = Client().post("/login/", {"username": "someone", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_a_post_without_csrf_token_is_refused(csrf_client: Client) -> None:
    response = csrf_client.post("/logout/")
    assert response.status_code == 403


def test_htmx_requests_carry_the_csrf_token_from_the_body(owner_client: Client) -> None:
    body = owner_client.get("/").content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in body


def test_logout_is_a_post_and_ends_the_session(owner_client: Client) -> None:
    response = owner_client.post("/logout/")
    assert response.status_code == 302
    assert owner_client.get("/").status_code == 302


def test_htmx_is_served_from_our_own_static_files(owner_client: Client) -> None:
    body = owner_client.get("/").content.decode()
    assert "/static/vendor/htmx-2.0.8.min.js" in body
    assert "unpkg.com" not in body and "cdn" not in body
