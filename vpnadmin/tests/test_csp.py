"""Content-Security-Policy without unsafe-inline or unsafe-eval, and pages that need neither."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"

# What a page may not contain under the policy: inline script, handlers, inline style,
# and htmx features that evaluate strings (trigger filters, hx-on, js: values).
FORBIDDEN = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "style element": re.compile(r"<style\b", re.IGNORECASE),
    "htmx trigger filter": re.compile(r"hx-trigger\s*=\s*\"[^\"]*\[", re.IGNORECASE),
    "hx-on": re.compile(r"\shx-on", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "js: value": re.compile(r"hx-(vals|headers)\s*=\s*['\"]\s*js:", re.IGNORECASE),
}


def _violations(text: str) -> list[str]:
    return [kind for kind, pattern in FORBIDDEN.items() if pattern.search(text)]


def test_the_policy_forbids_inline_script_inline_style_and_eval(owner_client: Client) -> None:
    policy = owner_client.get("/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


def test_the_login_page_and_error_pages_carry_the_policy_too() -> None:
    assert "script-src 'self'" in Client().get("/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in Client().get("/healthz")["Content-Security-Policy"]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html")))
def test_no_template_needs_what_the_policy_forbids(path: str) -> None:
    assert _violations((TEMPLATES / path).read_text()) == []


@pytest.mark.parametrize(
    "url", ["/", "/users/", "/containers/", "/containers/hosts/", "/perf/", "/perf/cache/", "/perf/memory/", "/audit/"]
)
def test_rendered_pages_need_nothing_the_policy_forbids(owner_client: Client, url: str) -> None:
    response = owner_client.get(url)
    assert response.status_code == 200
    assert _violations(response.content.decode()) == []


def test_htmx_runs_without_eval() -> None:
    base = (TEMPLATES / "base.html").read_text()
    assert '"allowEval": false' in base and '"includeIndicatorStyles": false' in base


def test_polling_panels_are_driven_from_static_javascript() -> None:
    script = (Path(settings.BASE_DIR) / "static" / "js" / "app.js").read_text()
    assert "[data-poll]" in script and '"poll"' in script
    dashboard = (TEMPLATES / "vpnadmin" / "dashboard.html").read_text()
    assert 'hx-trigger="poll, refresh-now" data-poll="5"' in dashboard
