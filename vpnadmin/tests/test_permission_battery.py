"""Every URL and every admin action, for anonymous, each role and a superuser.

The URL patterns are walked from the resolver: a URL added later without a row in
URL_RULES fails `test_every_url_pattern_has_a_rule`, so nobody can add a page that this
battery does not check. For each rule the exact status is asserted per role (302 to the
login page for anonymous, 403 without the permission, the page's own status with it),
and a refusal must not write a single row (PostgreSQL's per-transaction tuple counters).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from vpnadmin.roles import ADMINISTRATOR, OPERATOR, VIEWER

pytestmark = pytest.mark.django_db

MISSING = 999_999  # an id no row has: a permitted caller gets 404, a refused one 403

ROLES = ("anonymous", "stranger", VIEWER, OPERATOR, ADMINISTRATOR, "superuser")

# Writes a refused request may make: its own session bookkeeping, nothing else.
_SESSION_TABLES = {"django_session", "vpnadmin_usersession"}


@dataclass(frozen=True)
class Rule:
    method: str
    perms: tuple[str, ...]  # all needed; () = any logged-in user
    ok: int  # the status for a caller holding the permissions
    kwargs: dict[str, Any] | None = None
    public: bool = False  # no login needed
    anonymous: int = 302  # what an anonymous caller gets


VIEW_USERS, ADD_USERS, CHANGE_USERS = "users.view_vpnuser", "users.add_vpnuser", "users.change_vpnuser"
VIEW_SERVERS = "containers.view_vpnserver"
PERF = "vpnadmin.view_performance"

URL_RULES: dict[str, list[Rule]] = {
    "dashboard": [Rule("GET", ("vpnadmin.view_dashboard",), 200)],
    "login": [Rule("GET", (), 302, public=True, anonymous=200)],  # a logged-in caller goes on to the dashboard
    "logout": [Rule("POST", (), 302, public=True, anonymous=302)],
    "healthz": [Rule("GET", (), 200, public=True, anonymous=200)],
    "metrics": [Rule("GET", ("is_staff",), 200, public=True)],
    "audit": [Rule("GET", ("vpnadmin.view_auditentry",), 200)],
    "account_sessions": [Rule("GET", (), 200)],
    "logout_everywhere": [Rule("GET", (), 405)],
    "staff_logout_everywhere": [Rule("POST", ("vpnadmin.manage_sessions",), 404, {"pk": MISSING})],
    "users:list": [Rule("GET", (VIEW_USERS,), 200)],
    "users:stats": [Rule("GET", (VIEW_USERS,), 200)],
    "users:bulk": [Rule("POST", (VIEW_USERS,), 302)],
    # An empty form is a 400 with the errors on the page.
    "users:create": [Rule("GET", (ADD_USERS,), 200), Rule("POST", (ADD_USERS,), 400)],
    "users:import": [Rule("GET", (ADD_USERS,), 200), Rule("POST", (ADD_USERS,), 400)],
    "users:export": [Rule("GET", (VIEW_USERS,), 200)],
    "users:detail": [Rule("GET", (VIEW_USERS,), 404, {"pk": MISSING})],
    "users:credentials": [Rule("POST", (CHANGE_USERS,), 404, {"pk": MISSING})],
    "users:delivery": [Rule("POST", (CHANGE_USERS,), 404, {"pk": MISSING})],
    "users:delivery_conf": [Rule("POST", (CHANGE_USERS,), 404, {"pk": MISSING})],
    "users:subscription_rotate": [Rule("POST", (CHANGE_USERS,), 404, {"pk": MISSING})],
    "users:subscription_revoke": [Rule("POST", (CHANGE_USERS,), 404, {"pk": MISSING})],
    "users:subscriptions_bulk": [Rule("POST", (CHANGE_USERS,), 302)],
    "subscriptions:subscription": [
        Rule("GET", (), 404, {"token": "not-a-token"}, public=True, anonymous=404),
    ],
    "containers:servers": [Rule("GET", (VIEW_SERVERS,), 200)],
    "containers:batch": [Rule("POST", (VIEW_SERVERS,), 400)],
    "containers:server_detail": [Rule("GET", (VIEW_SERVERS,), 404, {"server_id": MISSING})],
    "containers:server_apply": [Rule("POST", ("containers.change_vpnserver",), 404, {"server_id": MISSING})],
    "containers:dataplane": [Rule("GET", (VIEW_SERVERS,), 200)],
    "containers:user_usage": [Rule("GET", (VIEW_USERS,), 404, {"user_id": MISSING})],
    "containers:server_new": [Rule("GET", ("containers.add_vpnserver",), 200)],
    "containers:sync": [Rule("GET", (), 405)],
    "containers:stats": [Rule("GET", (VIEW_SERVERS,), 200)],
    "containers:job": [Rule("GET", (VIEW_SERVERS,), 404, {"job_id": MISSING})],
    "containers:hosts": [Rule("GET", ("containers.view_dockerhost",), 200)],
    "containers:host_add_local": [Rule("GET", (), 405)],
    "containers:host_check": [Rule("POST", ("containers.change_dockerhost",), 404, {"host_id": MISSING})],
    "containers:host_enable": [Rule("POST", ("containers.change_dockerhost",), 404, {"host_id": MISSING})],
    "containers:host_disable": [Rule("POST", ("containers.change_dockerhost",), 404, {"host_id": MISSING})],
    "perf:index": [Rule("GET", (PERF,), 200)],
    "perf:cache": [Rule("GET", (PERF,), 200)],
    "perf:cache-invalidate-tag": [Rule("POST", (PERF, "vpnadmin.manage_cache", "is_staff"), 400)],
    "perf:cache-invalidate-pattern": [Rule("POST", (PERF, "vpnadmin.manage_cache", "is_staff"), 400)],
    "perf:cache-warm": [Rule("GET", (PERF,), 405)],
    "perf:memory": [Rule("GET", (PERF, "perf.view_memorysnapshot"), 200)],
    "perf:memory-tracemalloc": [Rule("POST", (PERF, "perf.control_profiler"), 302)],
    "perf:memory-gc": [Rule("GET", (PERF,), 405)],
}


def _walk(patterns: list[Any], namespace: str | None = None, prefix: str = "") -> Iterator[tuple[str, str]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if str(pattern.pattern) == "admin/":
                continue  # the admin is walked model by model below
            inner = namespace
            if pattern.namespace:
                inner = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
            yield from _walk(pattern.url_patterns, inner, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else (pattern.name or "")
            yield name, prefix + str(pattern.pattern)


def _sample_url(route: str) -> str:
    """A concrete URL for a route: ints become an id no row has, other parts a dummy word."""
    import re

    path = re.sub(r"<int:[^>]+>", str(MISSING), route)
    path = re.sub(r"<[^>]+>", "no-such-thing", path)
    return "/" + path.lstrip("^").rstrip("$")


def _invariant_failures(user: User | None, names: set[str]) -> list[str]:
    """Anonymous callers go to the login page unless the view is public, nobody gets a
    500, a refusal writes nothing: what every URL owes, with or without a rule."""
    from django.urls import resolve

    client = _client(user)
    failures = []
    for name, route in _walk(get_resolver().url_patterns):
        if name not in names:
            continue
        url = _sample_url(route)
        public = not getattr(resolve(url).func, "login_required", True)
        for method in ("GET", "POST"):
            before = _writes()
            response = _request(client, method, url)
            changed = _changed(before, _writes())
            if response.status_code >= 500:
                failures.append(f"{method} {url}: {response.status_code}")
            if user is None and not public and response.status_code != 302:
                failures.append(f"{method} {url}: {response.status_code} for anonymous, expected 302")
            to_login = response.status_code == 302 and response.url.startswith(("/login/", "/admin/login/"))
            refused = response.status_code in (403, 405) or to_login
            if refused and changed and name not in ("login", "logout"):
                failures.append(f"{method} {url} refused but wrote {changed}")
    return failures


@pytest.mark.parametrize("role", ROLES)
def test_urls_without_a_rule_still_get_the_invariants(role: str, cast: dict[str, User | None]) -> None:
    unruled = {name for name, _ in _walk(get_resolver().url_patterns)} - set(URL_RULES)
    assert _invariant_failures(cast[role], unruled) == []


@pytest.mark.parametrize("role", ["anonymous", "stranger", VIEWER])
def test_the_invariants_hold_for_every_url_walked_from_the_resolver(role: str, cast: dict[str, User | None]) -> None:
    # The same invariants over every URL, so the check itself is exercised today.
    every = {name for name, _ in _walk(get_resolver().url_patterns)}
    assert _invariant_failures(cast[role], every) == []


def test_every_url_pattern_has_a_rule() -> None:
    found = dict(_walk(get_resolver().url_patterns))
    unnamed = [route for name, route in found.items() if not name]
    assert unnamed == [], "every URL needs a name so the battery can check it"
    missing = sorted(set(found) - set(URL_RULES))
    assert missing == [], f"add a rule to URL_RULES for: {missing}"
    stale = sorted(set(URL_RULES) - set(found))
    assert stale == [], f"rules for URLs that no longer exist: {stale}"


# --- the cast ---------------------------------------------------------------------------


@pytest.fixture
def cast(owner: User, stranger: User) -> dict[str, User | None]:
    people: dict[str, User | None] = {"anonymous": None, "stranger": stranger, "superuser": owner}
    for role in (VIEWER, OPERATOR, ADMINISTRATOR):
        user = User.objects.create_user(f"role-{role.lower()}", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        people[role] = user
    return people


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _holds(user: User | None, perms: tuple[str, ...]) -> bool:
    if user is None:
        return False
    fresh = User.objects.get(pk=user.pk)  # no permission cache from an earlier request
    return all(fresh.is_staff if perm == "is_staff" else fresh.has_perm(perm) for perm in perms)


def _writes() -> dict[str, int]:
    """Rows inserted, updated or deleted per table so far in this transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_xact_user_tables")
        return {name: count for name, count in cursor.fetchall() if count}


def _changed(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {
        table: after[table] - before.get(table, 0)
        for table in after
        if table not in _SESSION_TABLES and after[table] != before.get(table, 0)
    }


def test_the_write_detector_sees_a_single_row_written() -> None:
    before = _writes()
    Group.objects.create(name="Detected")
    assert _changed(before, _writes()) == {"auth_group": 1}


def _request(client: Client, method: str, url: str) -> Any:
    return client.get(url) if method == "GET" else client.post(url, {})


def _cases() -> Iterator[tuple[str, int, Rule]]:
    for name, rules in URL_RULES.items():
        for index, rule in enumerate(rules):
            yield name, index, rule


@pytest.mark.parametrize("role", ROLES)
def test_every_url_answers_each_role_with_the_exact_status_and_refusals_change_nothing(
    role: str, cast: dict[str, User | None]
) -> None:
    user = cast[role]
    client = _client(user)
    failures = []
    for name, _index, rule in _cases():
        url = reverse(name, kwargs=rule.kwargs)
        if user is None:
            expected = rule.anonymous if rule.public or rule.ok == 405 else 302
            if rule.ok == 405 and not rule.public:
                expected = 302  # the login comes first
        elif rule.ok == 405:
            # The wrong method: 405 from the view, unless the section refuses first.
            expected = 405 if _holds(user, rule.perms) else 403
        else:
            expected = rule.ok if _holds(user, rule.perms) else 403
        if name == "metrics" and user is not None and not _holds(user, rule.perms):
            expected = 403
        if name == "metrics" and user is None:
            expected = 302
        before = _writes()
        response = _request(client, rule.method, url)
        if name == "logout" and user is not None:
            client = _client(user)  # logged out: log in again for the next URL
        if response.status_code != expected:
            failures.append(f"{rule.method} {url}: {response.status_code}, expected {expected}")
            continue
        if expected in (302, 403, 405) and name not in ("logout", "login"):
            changed = _changed(before, _writes())
            if changed:
                failures.append(f"{rule.method} {url} refused with {expected} but wrote {changed}")
    assert failures == [], "\n".join(failures)


# --- the admin, model by model and action by action ---------------------------------------


def _admin_expectations(user: User | None, model_admin: Any) -> tuple[int, int]:
    """(changelist, add page) statuses, from the permissions the role holds."""
    if user is None or not user.is_staff:
        return 302, 302  # the admin's own login page
    opts = model_admin.model._meta
    fresh = User.objects.get(pk=user.pk)
    can_view = fresh.has_perm(f"{opts.app_label}.view_{opts.model_name}") or fresh.has_perm(
        f"{opts.app_label}.change_{opts.model_name}"
    )

    class _Request:
        pass

    request = _Request()
    request.user = fresh  # type: ignore[attr-defined]
    changelist = 200 if can_view and model_admin.has_view_or_change_permission(request) else 403
    add = 200 if model_admin.has_add_permission(request) else 403
    return changelist, add


@pytest.mark.parametrize("role", ROLES)
def test_every_admin_page_and_action_answers_each_role_and_refusals_change_nothing(
    role: str, cast: dict[str, User | None]
) -> None:
    user = cast[role]
    client = _client(user)
    failures = []
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        base = f"/admin/{opts.app_label}/{opts.model_name}/"
        changelist, add = _admin_expectations(user, model_admin)
        for url, expected in ((base, changelist), (f"{base}add/", add)):
            response = client.get(url)
            if response.status_code != expected:
                failures.append(f"GET {url}: {response.status_code}, expected {expected}")
        # Every action the superuser is offered, posted by this role on a row id no row has:
        # a role without the action's permission is told "no action selected" (302) and
        # nothing is written; the action never runs.
        superuser = cast["superuser"]
        for action in _actions_of(model_admin, superuser):
            before = _writes()
            response = client.post(base, {"action": action, "_selected_action": [str(MISSING)]})
            own_actions = _actions_of(model_admin, user)
            allowed = action in own_actions
            if not allowed:
                # Not staff: the admin's login. No view: 403. Offered other actions: "no action
                # selected" and back to the list (302). Offered none: the list again (200).
                if user is None or not user.is_staff:
                    expected_status = 302
                elif changelist != 200:
                    expected_status = 403
                else:
                    expected_status = 302 if own_actions else 200
                if response.status_code != expected_status:
                    failures.append(f"action {action} on {base}: {response.status_code}, expected {expected_status}")
                changed = _changed(before, _writes())
                if changed:
                    failures.append(f"action {action} on {base} refused but wrote {changed}")
            elif response.status_code >= 500 or response.status_code == 403:
                failures.append(f"action {action} on {base}: {response.status_code} for a role allowed to run it")
    assert failures == [], "\n".join(failures)


def _actions_of(model_admin: Any, user: User | None) -> list[str]:
    if user is None or not user.is_staff:
        return []
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(pk=user.pk)
    return [name for name in model_admin.get_actions(request) if name]


# --- what each role means -------------------------------------------------------------------


def _perms_of(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_a_viewer_reads_everything_and_changes_nothing() -> None:
    perms = _perms_of(VIEWER)
    assert {"users.view_vpnuser", "containers.view_vpnserver", "containers.view_dockerhost"} <= perms
    assert {"vpnadmin.view_auditentry", "auth.view_user"} <= perms
    assert all(p.split(".")[1].startswith("view_") for p in perms)


def test_an_operator_runs_users_and_servers_but_not_hosts_caches_or_staff() -> None:
    perms = _perms_of(OPERATOR)
    assert {"users.change_vpnuser", "users.delete_vpnuser", "containers.add_vpnserver"} <= perms
    refused = {
        "containers.add_dockerhost",
        "containers.change_dockerhost",
        "vpnadmin.manage_cache",
        "perf.control_profiler",
        "auth.change_user",
        "auth.add_group",
        "vpnadmin.manage_sessions",
        "axes.delete_accessattempt",
    }
    assert perms & refused == set()


def test_an_administrator_holds_every_permission() -> None:
    from django.contrib.auth.models import Permission

    assert len(_perms_of(ADMINISTRATOR)) == Permission.objects.count()


def test_a_viewer_cannot_reveal_credentials(cast: dict[str, User | None]) -> None:
    client = _client(cast[VIEWER])
    assert client.post(f"/users/{MISSING}/credentials/").status_code == 403


def test_extra_post_fields_do_not_make_anyone_a_superuser(cast: dict[str, User | None]) -> None:
    client = _client(cast[OPERATOR])
    client.post("/account/logout-everywhere/", {"is_superuser": "on", "is_staff": "on"})
    assert not User.objects.get(pk=cast[OPERATOR].pk).is_superuser  # type: ignore[union-attr]


EXTRA_FIELDS = {"is_superuser": "on", "is_staff": "on", "private_key": "forged", "server": str(MISSING), "actor": "1"}


@pytest.mark.parametrize("role", [OPERATOR, "superuser"])
def test_extra_post_fields_on_every_form_are_ignored(role: str, cast: dict[str, User | None]) -> None:
    user = cast[role]
    client = _client(user)
    superusers = set(User.objects.filter(is_superuser=True).values_list("pk", flat=True))
    failures = []
    for name, _index, rule in _cases():
        if rule.method != "POST" or name in ("logout", "logout_everywhere"):
            continue
        response = client.post(reverse(name, kwargs=rule.kwargs), EXTRA_FIELDS)
        if response.status_code >= 500:
            failures.append(f"POST {name} with extra fields: {response.status_code}")
    assert failures == [], "\n".join(failures)
    assert set(User.objects.filter(is_superuser=True).values_list("pk", flat=True)) == superusers
    assert User.objects.filter(is_staff=True, pk=user.pk).exists()  # type: ignore[union-attr]
