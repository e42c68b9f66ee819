"""What VPN users receive: the subscription URL under gunicorn, warm and right after a change,
and the human page with its QR codes.

- `/sub/<token>/` warm (base64 list, a v2rayN client) against a bare Django view returning
  the same bytes under the same gunicorn: the endpoint every client of every user polls.
  Ours waits for one Redis round trip (the limit's count and the cache read overlap), the
  bare view for none: on a machine loaded far beyond its cores each of those socket calls
  can be descheduled for a fraction of a millisecond, and the ratio moves with the load;
- the first fetch after the user changed, against the warm fetch: it must be fresh at once
  (checked on every round: the bench fails loudly if a stale answer comes back);
- the subscription page of a WireGuard user (links and three QR codes) against the same
  page, same data and template, without the QR codes.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from bench.harness import Row, gunicorn, http_get, interleaved_medians

REQUESTS_PER_ROUND = 100
CHANGES = 100
V2RAYN = {"User-Agent": "v2rayN/6.42"}
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0", "Accept": "text/html"}
# The benchmark's own client sends thousands of requests: lift the per-address limit (the
# limiter still counts each request in Redis, so its cost is in the figure).
APP_ENV = {"SUBSCRIPTION_RATE_LIMIT": "1000000000", "DJANGO_SETTINGS_MODULE": "bench.delivery.settings"}


def _setup() -> tuple[int, str, str]:
    """A VLESS user and a WireGuard user on servers with public hosts, with subscription tokens."""
    from containers.models import DockerHost, VpnServer
    from users.models import VpnUser
    from users.services import users_create_batch
    from users.subscriptions.services import subscription_rotate

    tag = uuid.uuid4().hex[:8]
    host, _ = DockerHost.objects.get_or_create(
        name="bench-delivery", defaults={"base_url": "unix:///var/run/docker.sock", "network_mode": "none"}
    )
    port = 20000 + int(tag[:4], 16) % 20000
    vless = VpnServer.objects.create(host=host, name=f"dlv-v-{tag}", protocol="vless", image="x", port=port,
                                     public_host="vpn.example.com")  # fmt: skip
    wireguard = VpnServer.objects.create(
        host=host, name=f"dlv-w-{tag}", protocol="wireguard", image="x", port=port + 1,
        public_host="vpn.example.com", wg_public_key="HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=",
        wg_subnet="10.8.0.0/24",
    )  # fmt: skip
    result = users_create_batch(
        actor=None,
        rows=[
            {"username": f"dlv-v-{tag}", "protocol": "vless", "server_id": vless.pk, "data_limit": 10**12},
            {"username": f"dlv-w-{tag}", "protocol": "wireguard", "server_id": wireguard.pk},
        ],
    )
    assert result.ok, result.errors
    vless_id, wireguard_id = result.ids
    VpnUser.objects.filter(pk=wireguard_id).update(wg_address="10.8.0.2")
    vless_token = subscription_rotate(actor=None, user_id=vless_id)
    wireguard_token = subscription_rotate(actor=None, user_id=wireguard_id)
    assert vless_token is not None and wireguard_token is not None
    return vless_id, vless_token.token, wireguard_token.token


def run() -> list[Row]:
    from users.services import users_update_batch

    user_id, token, wg_token = _setup()
    with tempfile.TemporaryDirectory() as tmp, gunicorn(env=APP_ENV) as app:
        body = http_get(f"{app.url}/sub/{token}/", headers=V2RAYN)
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        with gunicorn(
            "bench.delivery.bare:application", env={"DJANGO_SETTINGS_MODULE": "", "BENCH_BODY_FILE": str(body_file)}
        ) as bare:
            assert http_get(bare.url + "/") == body

            def fetches(url: str, headers: dict[str, str]) -> None:
                for _ in range(REQUESTS_PER_ROUND):
                    http_get(url, headers=headers)

            def timed_fetch(limit: int) -> float:
                request = urllib.request.Request(f"{app.url}/sub/{token}/", headers=V2RAYN)  # noqa: S310
                started = time.perf_counter()
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback  # nosec B310
                    response.read()
                    userinfo = response.headers["Subscription-Userinfo"]
                elapsed = time.perf_counter() - started
                if f"total={limit};" not in userinfo:
                    raise AssertionError("a stale subscription was served after the user changed")
                return elapsed

            # Each change commits and invalidates (untimed); the next fetch must already show
            # it (timed), and the one after it is the warm fetch of the same state (timed).
            after_change, warm_again = [], []
            for limit in range(10**12 + 1, 10**12 + 1 + CHANGES):
                users_update_batch(actor=None, changes={user_id: {"data_limit": limit}}, action="bench")
                after_change.append(timed_fetch(limit))
                warm_again.append(timed_fetch(limit))

            page = f"{app.url}/sub/{wg_token}/"
            assert http_get(page, headers=BROWSER).count(b"<svg") == 3
            assert http_get(f"{app.url}/bench-noqr/{wg_token}/", headers=BROWSER).count(b"<svg") == 0
            medians = interleaved_medians(
                {
                    "bare": lambda: fetches(bare.url + "/", {}),
                    "warm": lambda: fetches(f"{app.url}/sub/{token}/", V2RAYN),
                    "page_qr": lambda: fetches(page, BROWSER),
                    "page_plain": lambda: fetches(f"{app.url}/bench-noqr/{wg_token}/", BROWSER),
                },
                rounds=9,
            )
    per = {name: value / REQUESTS_PER_ROUND for name, value in medians.items()}
    per["changed"] = statistics.median(after_change)
    per["warm_changes"] = statistics.median(warm_again)
    return [
        Row.compare(
            "/sub/<token>/ warm (base64, rate limit counted in Redis)",
            per["warm"],
            "bare Django view returning the same bytes, no middleware, same gunicorn setup",
            per["bare"],
            "<= 1.5",
        ),
        Row.compare(
            "first /sub/ fetch after the user changed (fresh every time)",
            per["changed"],
            "the next fetch of the same state (warm), same server",
            per["warm_changes"],
            "<= 10",
        ),
        Row.compare(
            "subscription page of a WireGuard user, links + 3 QR codes",
            per["page_qr"],
            "the same page, data and template without the QR codes",
            per["page_plain"],
            "<= 2",
        ),
    ]
