"""Subscription URLs and the user page's delivery section, through the real client.

The public URL needs no login, answers the format the client asks for, says nothing
about tokens it does not know, is rate limited per address (in Redis, or in-process
when Redis is down) and is fresh the moment a user, a server or a token changes.
"""

from __future__ import annotations

import base64
import csv
import datetime
import io
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import yaml
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone

from containers.models import DockerHost, VpnServer
from users.delivery.links import share_link
from users.delivery.profiles import profile_for
from users.models import VpnUser
from users.services import users_set_active, users_update_batch
from users.subscriptions.models import Subscription
from users.subscriptions.services import subscription_rotate, subscriptions_issue
from users.subscriptions.tokens import token_hash
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db

SERVER_PUBLIC = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


# --- a small world: one server per protocol, users on them ------------------------------------


@pytest.fixture
def host(db: None) -> DockerHost:
    return DockerHost.objects.create(name="edge", base_url=settings.DOCKER_HOST, network_mode="none")


@pytest.fixture
def make_server(host: DockerHost) -> Callable[..., VpnServer]:
    ports = iter(range(30000, 31000))

    def make(protocol: str = "vless", **fields: Any) -> VpnServer:
        port = next(ports)
        values: dict[str, Any] = {"name": f"{protocol}-{port}", "protocol": protocol, "image": "x", "port": port,
                                  "public_host": "vpn.example.com"}  # fmt: skip
        if protocol == "wireguard":
            values.update(wg_public_key=SERVER_PUBLIC, wg_subnet="10.8.0.0/24")
        values.update(fields)
        return VpnServer.objects.create(host=host, **values)

    return make


@pytest.fixture
def make_user(make_server: Callable[..., VpnServer]) -> Callable[..., VpnUser]:
    from users.services import users_create_batch

    def make(username: str = "alice", protocol: str = "vless", server: VpnServer | None = None, **values: Any) -> Any:
        server = server if server is not None else make_server(protocol)
        result = users_create_batch(
            actor=None, rows=[{"username": username, "protocol": protocol, "server_id": server.pk, **values}]
        )
        assert result.ok, result.errors
        (pk,) = result.ids
        # What the server's apply allocates (containers.sync), set here without a running server.
        if protocol == "shadowsocks":
            VpnUser.objects.filter(pk=pk).update(ss_port=40000 + pk % 20000)
        if protocol == "wireguard":
            VpnUser.objects.filter(pk=pk).update(wg_address=f"10.8.{pk // 250 % 250}.{pk % 250 + 2}")
        return VpnUser.objects.select_related("server").get(pk=pk)

    return make


def issue(user: VpnUser) -> str:
    issued = subscription_rotate(actor=None, user_id=user.pk)
    assert issued is not None
    return issued.token


def fetch(token: str, *, client: Client | None = None, ua: str = "v2rayNG/1.8.5", **extra: Any) -> Any:
    return (client or Client()).get(f"/sub/{token}/", HTTP_USER_AGENT=ua, **extra)


def expected_link(user: VpnUser) -> str:
    profile = profile_for(VpnUser.objects.select_related("server").get(pk=user.pk))
    return share_link(profile)  # type: ignore[arg-type]


# --- formats ---------------------------------------------------------------------------------


def test_a_v2rayng_client_gets_the_base64_list_of_exactly_the_users_link(make_user: Callable[..., VpnUser]) -> None:
    user = make_user(data_limit=10_000_000, used_traffic=1234)
    VpnUser.objects.filter(pk=user.pk).update(expire_at=datetime.datetime(2031, 1, 2, tzinfo=datetime.UTC))
    make_user("bob")  # another user's link never leaks into this subscription
    response = fetch(issue(user))
    assert response.status_code == 200
    assert base64.b64decode(response.content).decode().splitlines() == [expected_link(user)]
    assert response["Subscription-Userinfo"] == "upload=0; download=1234; total=10000000; expire=1925078400"
    assert response["Profile-Update-Interval"] == "12"
    assert base64.b64decode(response["Profile-Title"].removeprefix("base64:")).decode().endswith("alice")
    assert response["Cache-Control"] == "no-store, private"
    assert response["Referrer-Policy"] == "no-referrer"
    assert "Set-Cookie" not in response and not response.cookies


def test_the_link_in_a_subscription_carries_the_servers_public_host_and_port_not_its_engine(
    make_user: Callable[..., VpnUser], make_server: Callable[..., VpnServer]
) -> None:
    server = make_server("vless", public_host="edge.example.net", public_port=8443)
    user = make_user(server=server)
    (link,) = base64.b64decode(fetch(issue(user)).content).decode().splitlines()
    assert link.startswith(f"vless://{user.credential_uuid}@edge.example.net:8443?")


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        ("ClashVerge/1.7.7", "clash"),
        ("clash.meta", "clash"),
        ("mihomo/1.18.3", "clash"),
        ("Stash/2.4.7 Clash/1.11.0", "clash"),
        ("SFA/1.9.3 (Android 14)", "singbox"),
        ("SFI/1.9.3", "singbox"),
        ("HiddifyNext/2.5.7", "singbox"),
        ("sing-box 1.10.1", "singbox"),
        ("v2rayN/6.42", "base64"),
        ("NekoBox/Android/1.3.2", "base64"),
        ("", "base64"),
    ],
)
def test_the_format_follows_the_clients_user_agent_as_peer_panels_do(
    make_user: Callable[..., VpnUser], user_agent: str, expected: str
) -> None:
    user = make_user()
    response = fetch(issue(user), ua=user_agent)
    assert response.status_code == 200
    if expected == "clash":
        config = yaml.safe_load(response.content)
        assert [p["uuid"] for p in config["proxies"]] == [str(user.credential_uuid)]
        assert response["Content-Type"].startswith("text/yaml")
    elif expected == "singbox":
        config = json.loads(response.content)
        assert [o.get("uuid") for o in config["outbounds"] if o["type"] == "vless"] == [str(user.credential_uuid)]
    else:
        assert base64.b64decode(response.content).decode().splitlines() == [expected_link(user)]


def test_format_in_the_query_wins_over_the_user_agent(make_user: Callable[..., VpnUser]) -> None:
    token = issue(make_user())
    assert yaml.safe_load(fetch(token, ua="v2rayN/6", data={"format": "clash"}).content)["proxies"]
    assert json.loads(fetch(token, ua="ClashVerge/1", data={"format": "sing-box"}).content)["outbounds"]
    assert fetch(token, data={"format": "links"}).content.decode().startswith("vless://")


def test_an_unknown_format_is_a_clear_400_and_a_wrong_token_still_the_404(make_user: Callable[..., VpnUser]) -> None:
    token = issue(make_user())
    response = fetch(token, data={"format": "pdf"})
    assert response.status_code == 400
    assert "Unknown format 'pdf'" in response.content.decode() and "clash" in response.content.decode()
    assert fetch("x" * 32, data={"format": "pdf"}).status_code == 404


def test_a_wireguard_user_gets_its_conf_by_format_and_a_vless_user_a_clear_400(
    make_user: Callable[..., VpnUser],
) -> None:
    wg_user = make_user("carol", "wireguard")
    response = fetch(issue(wg_user), data={"format": "wireguard"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="carol.conf"'
    text = response.content.decode()
    assert f"PrivateKey = {wg_user.wg_private_key}" in text and f"PublicKey = {SERVER_PUBLIC}" in text
    assert f"Address = {VpnUser.objects.get(pk=wg_user.pk).wg_address}/32" in text
    response = fetch(issue(make_user()), data={"format": "conf"})
    assert response.status_code == 400 and "not a WireGuard" in response.content.decode()


@pytest.mark.skipif(not shutil.which("wg-quick"), reason="Debian's wireguard-tools (make test installs it)")
def test_the_conf_served_to_a_wireguard_client_passes_wg_quick_strip(
    make_user: Callable[..., VpnUser], tmp_path: Any
) -> None:
    response = fetch(issue(make_user("carol", "wireguard")), data={"format": "wireguard"})
    path = tmp_path / "carol.conf"
    path.write_bytes(response.content)
    done = subprocess.run(["wg-quick", "strip", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_shadowsocks_user_gets_an_ss_link_on_its_own_port(make_user: Callable[..., VpnUser]) -> None:
    user = make_user("dave", "shadowsocks")
    (link,) = base64.b64decode(fetch(issue(user)).content).decode().splitlines()
    assert link.startswith("ss://") and link.endswith(f"@vpn.example.com:{user.ss_port}#dave")


# --- the human page ---------------------------------------------------------------------------


def test_a_browser_gets_a_page_with_usage_expiry_links_and_qr_codes_and_no_inline_script(
    make_user: Callable[..., VpnUser],
) -> None:
    user = make_user(data_limit=2 * 1024**3, used_traffic=512 * 1024**2)
    response = fetch(issue(user), ua=BROWSER_UA, HTTP_ACCEPT=BROWSER_ACCEPT)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    html = response.content.decode().replace("\xa0", " ")
    assert "512.0 MB of 2.0 GB" in html and "1.5 GB left" in html and "never" in html
    assert expected_link(user).replace("&", "&amp;") in html
    assert html.count("<svg") == 2  # the link's QR code and the subscription URL's
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None  # scripts only from files (CSP)
    assert 'name="referrer" content="no-referrer"' in html


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"is_active": False}, "disabled by the provider"),
        ({"expire_at": timezone.now() - datetime.timedelta(days=1)}, "expired on"),
        ({"data_limit": 1000, "used_traffic": 1000}, "used all of its data"),
    ],
    ids=["disabled", "expired", "limited"],
)
def test_a_disabled_expired_or_limited_subscription_has_no_working_links_and_its_page_says_why(
    make_user: Callable[..., VpnUser], change: dict[str, Any], reason: str
) -> None:
    user = make_user()
    VpnUser.objects.filter(pk=user.pk).update(**change)
    token = issue(user)
    assert base64.b64decode(fetch(token).content) == b""
    assert yaml.safe_load(fetch(token, ua="mihomo/1").content)["proxies"] == []
    assert [o["type"] for o in json.loads(fetch(token, ua="SFA/1").content)["outbounds"]] == ["direct"]
    page = fetch(token, ua=BROWSER_UA, HTTP_ACCEPT=BROWSER_ACCEPT).content.decode()
    assert reason in page and "vless://" not in page


def test_a_user_without_a_server_or_a_server_without_public_host_gets_an_empty_list_and_a_plain_reason(
    make_user: Callable[..., VpnUser], make_server: Callable[..., VpnServer]
) -> None:
    lonely = make_user("lonely")
    VpnUser.objects.filter(pk=lonely.pk).update(server=None)
    hidden = make_user("hidden", server=make_server("vless", public_host=""))
    for user in (lonely, hidden):
        token = issue(user)
        assert fetch(token).status_code == 200 and base64.b64decode(fetch(token).content) == b""
        page = fetch(token, ua=BROWSER_UA, HTTP_ACCEPT=BROWSER_ACCEPT).content.decode()
        assert "not finished setting up" in page and "vless://" not in page


# --- tokens: unknown, rotated, revoked, stored only as a hash -----------------------------------------


def _normalised(response: Any, path: str) -> bytes:
    """The body without what differs per request anyway: the path and the request id."""
    return re.sub(rb"\b[0-9a-f]{32}\b", b"ID", response.content.replace(path.encode(), b"PATH"))


def test_a_wrong_truncated_or_other_shaped_token_answers_exactly_like_an_unknown_url(
    make_user: Callable[..., VpnUser],
) -> None:
    token = issue(make_user())
    reference_path = "/no-such-page/at-all/"
    reference = Client().get(reference_path)
    assert reference.status_code == 404
    wrong = "A" * 32
    for path in (f"/sub/{wrong}/", f"/sub/{token[:-1]}/", f"/sub/{token}x/", f"/sub/{token}/extra/", "/sub/a/",
                 "/sub/%00%ff/", f"/sub/{token.upper()}/"):  # fmt: skip
        response = Client().get(path, HTTP_USER_AGENT="v2rayN/6")
        assert response.status_code == 404, path
        assert _normalised(response, path) == _normalised(reference, reference_path), path
        assert response["Content-Type"] == reference["Content-Type"]
    assert fetch(token).status_code == 200


def test_a_rotated_token_is_dead_at_once_even_after_it_was_served_from_the_cache(
    make_user: Callable[..., VpnUser], make_operator: Callable[..., User], django_capture_on_commit_callbacks: Any
) -> None:
    user = make_user()
    old = issue(user)
    assert fetch(old).status_code == 200
    assert fetch(old).status_code == 200  # now from the cache
    client = Client()
    client.force_login(make_operator("users.view_vpnuser", "users.change_vpnuser"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/users/{user.pk}/subscription/rotate/")
    assert response.status_code == 200
    new = re.search(r"/sub/([A-Za-z0-9_-]{32})/", response.content.decode())
    assert new is not None
    assert fetch(old).status_code == 404
    assert fetch(new.group(1)).status_code == 200
    assert AuditEntry.objects.filter(action="subscriptions_issue", object_ids=[user.pk]).exists()


def test_a_revoked_token_is_dead_at_once(
    make_user: Callable[..., VpnUser], owner_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    user = make_user()
    token = issue(user)
    assert fetch(token).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(f"/users/{user.pk}/subscription/revoke/")
    assert "Revoked" in response.content.decode()
    assert fetch(token).status_code == 404
    assert not Subscription.objects.filter(user=user).exists()
    assert AuditEntry.objects.filter(action="subscriptions_revoke", count=1).exists()


def test_the_database_and_redis_hold_no_working_token_and_no_credential(
    make_user: Callable[..., VpnUser], redis_client: Any
) -> None:
    user = make_user()
    token = issue(user)
    assert fetch(token).status_code == 200  # cached now
    stored = Subscription.objects.get(user=user)
    assert stored.token_hash == token_hash(token) and token not in stored.token_hash
    assert len(token) == 32 and len(base64.urlsafe_b64decode(token + "==")) * 8 >= 128
    values = b"".join(redis_client.get(key) or b"" for key in redis_client.scan_iter(match="*sub:*", count=1000))
    assert values, "the subscription was cached"
    assert token.encode() not in values and str(user.credential_uuid).encode() not in values


def test_tokens_are_unique_per_issue(make_user: Callable[..., VpnUser]) -> None:
    user = make_user()
    assert len({issue(user) for _ in range(20)}) == 20
    assert Subscription.objects.filter(user=user).count() == 1


# --- freshness --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # each write commits: its invalidation runs as in production
def test_a_user_change_is_served_at_once_not_after_the_cache_timeout(make_user: Callable[..., VpnUser]) -> None:
    user = make_user()
    token = issue(user)
    assert base64.b64decode(fetch(token).content) != b""
    users_set_active(actor=None, users=VpnUser.objects.filter(pk=user.pk), active=False)
    assert base64.b64decode(fetch(token).content) == b""
    users_update_batch(actor=None, changes={user.pk: {"is_active": True, "data_limit": 5000}}, action="test")
    response = fetch(token)
    assert base64.b64decode(response.content) != b"" and "total=5000" in response["Subscription-Userinfo"]


def test_a_server_change_is_served_at_once(
    make_user: Callable[..., VpnUser], django_capture_on_commit_callbacks: Any
) -> None:
    from containers.selectors import invalidate_server_tags

    user = make_user()
    token = issue(user)
    assert user.server_id is not None
    assert "@vpn.example.com:" in base64.b64decode(fetch(token).content).decode()
    with django_capture_on_commit_callbacks(execute=True):
        VpnServer.objects.filter(pk=user.server_id).update(public_host="new.example.com")
        invalidate_server_tags([user.server_id])  # what the server services do after an edit
    assert "@new.example.com:" in base64.b64decode(fetch(token).content).decode()


def test_an_expiry_passing_while_the_answer_is_cached_takes_the_links_away(make_user: Callable[..., VpnUser]) -> None:
    user = make_user()
    VpnUser.objects.filter(pk=user.pk).update(expire_at=timezone.now() + datetime.timedelta(seconds=1))
    token = issue(user)
    assert base64.b64decode(fetch(token).content) != b""
    time.sleep(1.2)  # no write happens when a user expires: the cached answer must notice by itself
    assert base64.b64decode(fetch(token).content) == b""


# --- rate limit ---------------------------------------------------------------------------------


@override_settings(SUBSCRIPTION_RATE_LIMIT=3, SUBSCRIPTION_RATE_PERIOD=60)
def test_requests_beyond_the_limit_get_429_wrong_tokens_count_too_and_other_addresses_are_not_affected(
    make_user: Callable[..., VpnUser],
) -> None:
    token = issue(make_user())
    address = "203.0.113.9"
    assert fetch("B" * 32, REMOTE_ADDR=address).status_code == 404
    assert fetch("C" * 32, REMOTE_ADDR=address).status_code == 404
    assert fetch(token, REMOTE_ADDR=address).status_code == 200
    limited = fetch(token, REMOTE_ADDR=address)
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert fetch("D" * 32, REMOTE_ADDR=address).status_code == 429  # no more guesses either
    assert fetch(token, REMOTE_ADDR="203.0.113.10").status_code == 200
    # An IPv6 client is one client per /64.
    for suffix in ("1", "2", "3"):
        assert fetch(token, REMOTE_ADDR=f"2001:db8:1:2::{suffix}").status_code == 200
    assert fetch(token, REMOTE_ADDR="2001:db8:1:2::ffff").status_code == 429


@override_settings(SUBSCRIPTION_RATE_LIMIT=2, SUBSCRIPTION_RATE_PERIOD=60, BEHIND_PROXY=True)
def test_behind_the_proxy_each_client_is_limited_by_the_address_the_proxy_appended(
    make_user: Callable[..., VpnUser],
) -> None:
    token = issue(make_user())

    def via_proxy(chain: str) -> int:
        return int(fetch(token, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=chain).status_code)

    # The left entries are whatever the client sent: forging them does not buy a new budget.
    assert [via_proxy(f"10.0.0.{i}, 198.51.100.7") for i in range(3)] == [200, 200, 429]
    assert via_proxy("198.51.100.8") == 200  # another client behind the same proxy


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own, to stop: the shared one is never touched."""
    port = _closed_port()
    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    for _ in range(200):
        try:
            probe.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    probe.close()
    yield port, process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def test_with_redis_stopped_the_subscription_still_answers_and_the_limit_still_holds(
    make_user: Callable[..., VpnUser], private_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, process = private_redis
    caches = json.loads(json.dumps(settings.CACHES))
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port}/0"
    caches["default"]["OPTIONS"]["RETRY_INTERVAL"] = 0.2
    with override_settings(CACHES=caches, SUBSCRIPTION_RATE_LIMIT=4, SUBSCRIPTION_RATE_PERIOD=3600):
        token = issue(make_user())
        assert fetch(token, REMOTE_ADDR="198.51.100.1").status_code == 200  # counted and cached in Redis
        process.terminate()
        process.wait(timeout=10)
        answers = [fetch(token, REMOTE_ADDR="198.51.100.2").status_code for _ in range(6)]
        assert answers == [200, 200, 200, 200, 429, 429]
        assert base64.b64decode(fetch(token, REMOTE_ADDR="198.51.100.3").content) != b""


# --- the user page -------------------------------------------------------------------------------


def test_the_user_page_shows_no_link_until_an_audited_reveal_by_someone_who_may_change_users(
    make_user: Callable[..., VpnUser], owner_client: Client
) -> None:
    user = make_user()
    link = expected_link(user)
    page = owner_client.get(f"/users/{user.pk}/").content.decode()
    assert "Reveal links and QR codes" in page and str(user.credential_uuid) not in page
    response = owner_client.post(f"/users/{user.pk}/delivery/")
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    assert link.replace("&", "&amp;") in html and "<svg" in html and "data-copy" in html
    assert "This user has no subscription URL" in html
    assert AuditEntry.objects.filter(action="users_reveal_delivery", object_ids=[user.pk]).count() == 1


def test_reveal_download_rotate_and_revoke_need_the_change_permission(
    make_user: Callable[..., VpnUser], make_operator: Callable[..., User], stranger_client: Client
) -> None:
    user = make_user("carol", "wireguard")
    viewer = Client()
    viewer.force_login(make_operator("users.view_vpnuser"))
    for path in ("delivery/", "wireguard.conf", "subscription/rotate/", "subscription/revoke/"):
        assert viewer.post(f"/users/{user.pk}/{path}").status_code == 403
        assert stranger_client.post(f"/users/{user.pk}/{path}").status_code == 403
        assert Client().post(f"/users/{user.pk}/{path}").status_code == 302  # to the login page
    assert "needs the permission to change users" in viewer.get(f"/users/{user.pk}/").content.decode()
    assert not AuditEntry.objects.filter(action__startswith="users_reveal").exists()
    assert not Subscription.objects.exists()


def test_the_conf_downloads_by_post_only_audited_with_the_servers_key(
    make_user: Callable[..., VpnUser], owner_client: Client
) -> None:
    user = make_user("carol", "wireguard")
    assert owner_client.get(f"/users/{user.pk}/wireguard.conf").status_code == 405
    response = owner_client.post(f"/users/{user.pk}/wireguard.conf")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="carol.conf"'
    assert f"PublicKey = {SERVER_PUBLIC}" in response.content.decode()
    assert AuditEntry.objects.filter(action="users_download_wireguard_conf", object_ids=[user.pk]).exists()
    vless_user = make_user("dave")
    response = owner_client.post(f"/users/{vless_user.pk}/wireguard.conf")
    assert response.status_code == 409 and "no WireGuard file" in response.content.decode()


def test_the_user_page_says_what_is_missing_for_a_user_without_server_or_public_host(
    make_user: Callable[..., VpnUser], make_server: Callable[..., VpnServer], owner_client: Client
) -> None:
    lonely = make_user("lonely")
    VpnUser.objects.filter(pk=lonely.pk).update(server=None)
    page = owner_client.get(f"/users/{lonely.pk}/").content.decode()
    assert "No server serves this user" in page
    hidden = make_user("hidden", server=make_server("vless", name="edge-1", public_host=""))
    page = owner_client.get(f"/users/{hidden.pk}/").content.decode()
    assert "Server edge-1 has no public host" in page
    html = owner_client.post(f"/users/{hidden.pk}/delivery/").content.decode()
    assert "Nothing to hand out yet" in html and "vless://" not in html and "<svg" not in html
    wg_user = make_user("carol", "wireguard")
    VpnUser.objects.filter(pk=wg_user.pk).update(wg_address=None)
    page = owner_client.get(f"/users/{wg_user.pk}/").content.decode()
    assert "tunnel address" in page


def test_the_users_list_and_its_csv_export_carry_no_link(
    make_user: Callable[..., VpnUser], owner_client: Client
) -> None:
    user = make_user()
    issue(user)
    for path in ("/users/", "/users/export.csv"):
        response = owner_client.get(path)
        body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]  # the test client's response type knows no streaming
        assert str(user.credential_uuid).encode() not in body and b"vless://" not in body and b"/sub/" not in body


# --- bulk: issue as CSV, revoke ----------------------------------------------------------------------


def _csv_rows(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_issuing_for_a_filter_asks_first_then_downloads_working_urls_for_users_without_one(
    make_user: Callable[..., VpnUser], make_server: Callable[..., VpnServer], owner_client: Client
) -> None:
    server = make_server("vless")
    users = [make_user(f"team-{i}", server=server) for i in range(3)]
    make_user("other")
    had = issue(users[0])
    form = {"subscription_action": "issue_missing", "select_all": "on", "username": "team-*", "ids": ""}
    confirm = owner_client.post("/users/subscriptions/bulk/", form)
    assert confirm.status_code == 200 and "<strong>2</strong> users" in confirm.content.decode()
    assert Subscription.objects.count() == 1  # nothing written yet
    response = owner_client.post("/users/subscriptions/bulk/", {**form, "confirmed": "1"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = _csv_rows(response)
    assert sorted(row["username"] for row in rows) == ["team-1", "team-2"]
    for row in rows:
        token = row["subscription_url"].rsplit("/", 2)[-2]
        assert row["subscription_url"].startswith("http://testserver/sub/")
        assert base64.b64decode(fetch(token).content).decode().startswith("vless://")
    assert fetch(had).status_code == 200  # users that had a URL keep it
    entry = AuditEntry.objects.get(action="subscriptions_issue", count=2)
    assert entry.detail["selection"] and entry.detail["only_missing"] is True


def test_issuing_new_urls_for_ticked_users_rotates_theirs(
    make_user: Callable[..., VpnUser], owner_client: Client
) -> None:
    user = make_user()
    old = issue(user)
    form = {"subscription_action": "issue_all", "ids": str(user.pk), "confirmed": "1"}
    with override_settings(SUBSCRIPTION_BASE_URL="https://sub.example.com"):
        rows = _csv_rows(owner_client.post("/users/subscriptions/bulk/", form))
    assert [row["username"] for row in rows] == ["alice"]
    assert rows[0]["subscription_url"].startswith("https://sub.example.com/sub/")
    assert fetch(old).status_code == 404


def test_revoking_for_ticked_users_asks_then_kills_their_urls(
    make_user: Callable[..., VpnUser], owner_client: Client
) -> None:
    first, second, third = make_user("a-1"), make_user("a-2"), make_user("a-3")
    tokens = {user.pk: issue(user) for user in (first, second, third)}
    form = {"subscription_action": "revoke", "ids": f"{first.pk},{second.pk}"}
    assert "<strong>2</strong> users" in owner_client.post("/users/subscriptions/bulk/", form).content.decode()
    response = owner_client.post("/users/subscriptions/bulk/", {**form, "confirmed": "1"})
    assert response.status_code == 302
    assert [fetch(tokens[u.pk]).status_code for u in (first, second, third)] == [404, 404, 200]
    assert AuditEntry.objects.filter(action="subscriptions_revoke", count=2).exists()


def test_a_selection_above_the_export_limit_is_refused_and_nothing_is_written(
    make_user: Callable[..., VpnUser], owner_client: Client
) -> None:
    users = [make_user(f"many-{i}") for i in range(3)]
    form = {"subscription_action": "issue_all", "ids": ",".join(str(u.pk) for u in users)}
    with override_settings(SUBSCRIPTION_EXPORT_MAX_ROWS=2):
        confirm = owner_client.post("/users/subscriptions/bulk/", form)
        assert "narrow the filter" in confirm.content.decode()
        response = owner_client.post("/users/subscriptions/bulk/", {**form, "confirmed": "1"}, follow=True)
    assert "narrow the filter" in response.content.decode()
    assert not Subscription.objects.exists()
    assert not AuditEntry.objects.filter(action="subscriptions_issue").exists()


def test_bulk_subscription_actions_need_the_change_permission_and_a_valid_selection(
    make_user: Callable[..., VpnUser], make_operator: Callable[..., User], owner_client: Client
) -> None:
    user = make_user()
    viewer = Client()
    viewer.force_login(make_operator("users.view_vpnuser"))
    form = {"subscription_action": "issue_all", "ids": str(user.pk), "confirmed": "1"}
    assert viewer.post("/users/subscriptions/bulk/", form).status_code == 403
    for bad in ({"ids": ""}, {"ids": "1,x"}, {"subscription_action": "explode"}):
        response = owner_client.post("/users/subscriptions/bulk/", {**form, **bad}, follow=True)
        assert response.redirect_chain and response.redirect_chain[-1][0].startswith("/users/")
        assert any(m.level_tag == "error" for m in response.context["messages"])
    assert not Subscription.objects.exists()


def test_subscriptions_issue_service_returns_each_token_once_and_stores_only_hashes(
    make_user: Callable[..., VpnUser],
) -> None:
    ids = [make_user(f"svc-{i}").pk for i in range(5)]
    issued = subscriptions_issue(actor=None, users=VpnUser.objects.filter(pk__in=ids), selection="test")
    assert sorted(item.user_id for item in issued) == sorted(ids)
    assert {token_hash(item.token) for item in issued} == set(Subscription.objects.values_list("token_hash", flat=True))
    assert "hidden" in repr(issued[0]) and issued[0].token not in repr(issued[0])


# --- the admin ---------------------------------------------------------------------------------------

CHANGELIST = "/admin/users/vpnuser/"


def test_the_admin_issues_missing_urls_as_csv_and_rotates_only_after_asking(
    make_user: Callable[..., VpnUser], owner_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    first, second = make_user("adm-1"), make_user("adm-2")
    kept = issue(first)
    ids = [str(first.pk), str(second.pk)]
    response = owner_client.post(CHANGELIST, {"action": "issue_subscription_urls", "_selected_action": ids})
    assert [row["username"] for row in _csv_rows(response)] == ["adm-2"]
    assert fetch(kept).status_code == 200

    form = {"action": "rotate_subscription_urls", "_selected_action": ids}
    confirm = owner_client.post(CHANGELIST, form)
    assert confirm.status_code == 200 and "current URLs stop working" in confirm.content.decode()
    assert fetch(kept).status_code == 200  # nothing happened yet
    with django_capture_on_commit_callbacks(execute=True):
        rows = _csv_rows(owner_client.post(CHANGELIST, {**form, "post": "yes"}))
    assert sorted(row["username"] for row in rows) == ["adm-1", "adm-2"]
    assert fetch(kept).status_code == 404
    assert AuditEntry.objects.filter(action="subscriptions_issue").count() == 3  # the first issue() too


def test_the_admin_revokes_after_asking(
    make_user: Callable[..., VpnUser], owner_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    user = make_user()
    token = issue(user)
    form = {"action": "revoke_subscription_urls", "_selected_action": [str(user.pk)]}
    assert "Revoke the subscription URLs of 1 users?" in owner_client.post(CHANGELIST, form).content.decode()
    assert fetch(token).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(CHANGELIST, {**form, "post": "yes"}, follow=True)
    assert "Revoked the subscription URLs of 1 users." in response.content.decode()
    assert fetch(token).status_code == 404


def test_the_admin_offers_subscription_actions_only_to_those_who_may_change_users(
    make_user: Callable[..., VpnUser], make_operator: Callable[..., User]
) -> None:
    user = make_user()
    viewer = Client()
    viewer.force_login(make_operator("users.view_vpnuser"))
    assert "rotate_subscription_urls" not in viewer.get(CHANGELIST).content.decode()
    response = viewer.post(CHANGELIST, {"action": "rotate_subscription_urls", "_selected_action": [str(user.pk)],
                                        "post": "yes"})  # fmt: skip
    assert response["Content-Type"].startswith("text/html")
    assert not Subscription.objects.exists()


@pytest.mark.django_db(transaction=True)  # the delete commits: its invalidation runs as in production
def test_deleting_users_found_by_a_search_deletes_their_subscriptions_and_their_urls_answer_404(
    make_user: Callable[..., VpnUser],
) -> None:
    from django.http import QueryDict

    from users.forms import parse_filter
    from users.selectors import selection_queryset
    from users.services import users_delete

    gone, kept = make_user("gone-user"), make_user("kept-user")
    tokens = {gone.pk: issue(gone), kept.pk: issue(kept)}
    assert fetch(tokens[gone.pk]).status_code == 200
    flt, errors = parse_filter(QueryDict("q=gone-user"))
    assert not errors
    assert users_delete(actor=None, users=selection_queryset(flt)) == 1
    assert fetch(tokens[gone.pk]).status_code == 404
    assert fetch(tokens[kept.pk]).status_code == 200
    assert list(Subscription.objects.values_list("user_id", flat=True)) == [kept.pk]


def test_revoking_for_all_users_matching_a_search_revokes_exactly_theirs(
    make_user: Callable[..., VpnUser], owner_client: Client
) -> None:
    found = [make_user(f"shop-{i}") for i in range(3)]
    other = make_user("elsewhere")
    tokens = {user.pk: issue(user) for user in (*found, other)}
    form = {"subscription_action": "revoke", "select_all": "on", "q": "shop", "ids": "", "confirmed": "1"}
    response = owner_client.post("/users/subscriptions/bulk/", form, follow=True)
    assert "Revoked the subscription URLs of 3 users." in response.content.decode()
    assert list(Subscription.objects.values_list("user_id", flat=True)) == [other.pk]
    entry = AuditEntry.objects.get(action="subscriptions_revoke")
    assert entry.count == 3 and entry.object_ids == sorted(u.pk for u in found)
    assert tokens[other.pk]


def test_a_redis_that_forgot_the_limit_script_still_gets_answers_and_the_script_is_loaded_again(
    make_user: Callable[..., VpnUser], private_redis: tuple[int, subprocess.Popen[bytes]]
) -> None:
    port, _ = private_redis
    caches = json.loads(json.dumps(settings.CACHES))
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port}/0"
    with override_settings(CACHES=caches, SUBSCRIPTION_RATE_LIMIT=100):
        token = issue(make_user())
        assert fetch(token, REMOTE_ADDR="192.0.2.50").status_code == 200
        server = redis.Redis(port=port)
        server.script_flush()  # what a Redis restart does to loaded scripts
        assert fetch(token, REMOTE_ADDR="192.0.2.50").status_code == 200  # counted in-process this once
        assert fetch(token, REMOTE_ADDR="192.0.2.50").status_code == 200
        counters = list(server.scan_iter(match="*subrl:*"))
        assert len(counters) == 1 and int(server.get(counters[0]) or 0) == 2  # back in Redis
        server.close()


def test_a_warm_poll_runs_no_sql_and_sets_no_cookie(
    make_user: Callable[..., VpnUser], django_assert_num_queries: Any
) -> None:
    token = issue(make_user())
    first = fetch(token)
    with django_assert_num_queries(0):
        for user_agent in ("v2rayN/6", "ClashVerge/1.7", "SFA/1.11"):
            response = fetch(token, ua=user_agent)
            assert response.status_code == 200 and not response.cookies
    assert fetch(token).content == first.content
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still ran


# --- the command, for selections beyond one download -----------------------------------------------


def test_issuesubscriptions_writes_working_urls_to_an_owner_only_file_and_rotates_only_when_asked(
    make_user: Callable[..., VpnUser], tmp_path: Any, django_capture_on_commit_callbacks: Any
) -> None:
    import stat

    from django.core.management import CommandError, call_command

    users = [make_user(f"cmd-{i}") for i in range(3)]
    had = issue(users[0])
    with pytest.raises(CommandError, match="--base-url"):
        call_command("issuesubscriptions", "--username", "cmd-*", stderr=io.StringIO())
    output = tmp_path / "urls.csv"
    call_command("issuesubscriptions", "--username", "cmd-*", "--base-url", "https://sub.example.com",
                 "--output", str(output), stderr=io.StringIO())  # fmt: skip
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert sorted(row["username"] for row in rows) == ["cmd-1", "cmd-2"]
    for row in rows:
        assert row["subscription_url"].startswith("https://sub.example.com/sub/")
        assert fetch(row["subscription_url"].rsplit("/", 2)[-2]).status_code == 200
    with pytest.raises(CommandError, match="exists"):
        call_command("issuesubscriptions", "--base-url", "https://x.example", "--output", str(output))
    assert fetch(had).status_code == 200
    rotated = tmp_path / "rotated.csv"
    with django_capture_on_commit_callbacks(execute=True):
        call_command("issuesubscriptions", "--username", "cmd-0", "--rotate", "--base-url", "https://sub.example.com",
                     "--output", str(rotated), stderr=io.StringIO())  # fmt: skip
    assert [row["username"] for row in csv.DictReader(io.StringIO(rotated.read_text()))] == ["cmd-0"]
    assert fetch(had).status_code == 404


def test_the_url_answers_with_or_without_its_trailing_slash_and_to_head(make_user: Callable[..., VpnUser]) -> None:
    token = issue(make_user())
    with_slash = fetch(token)
    without = Client().get(f"/sub/{token}", HTTP_USER_AGENT="v2rayNG/1.8.5")
    assert without.status_code == 200 and without.content == with_slash.content
    head = Client().head(f"/sub/{token}/", HTTP_USER_AGENT="v2rayNG/1.8.5")
    assert head.status_code == 200 and head["Subscription-Userinfo"] == with_slash["Subscription-Userinfo"]
    assert Client().post(f"/sub/{token}/").status_code in (403, 405)  # nothing to post to
