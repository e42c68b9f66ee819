"""A real Chromium: an operator reveals a user's links, sees the QR codes, downloads the .conf
and issues a subscription URL; a VPN user's browser opens that URL and sees its page.

The QR codes are read back from Chromium's own pixels by zbar, and the CSP the app sends
is in force (copy buttons work from static/js, no inline script).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from containers.models import DockerHost, VpnServer
from users.models import VpnUser
from users.services import users_create_batch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SERVER_PUBLIC = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="


def _wireguard_user(name: str = "carol") -> VpnUser:
    host = DockerHost.objects.create(name="edge", base_url="unix:///var/run/docker.sock", network_mode="none")
    server = VpnServer.objects.create(
        host=host, name="wg-edge", protocol="wireguard", image="x", port=51820, public_host="vpn.example.com",
        wg_public_key=SERVER_PUBLIC, wg_subnet="10.8.0.0/24",
    )  # fmt: skip
    result = users_create_batch(actor=None, rows=[{"username": name, "protocol": "wireguard", "server_id": server.pk}])
    assert result.ok, result.errors
    VpnUser.objects.filter(pk=result.ids[0]).update(wg_address="10.8.0.2")
    return VpnUser.objects.get(pk=result.ids[0])


def _decode_qr(locator: Any, tmp_path: Path) -> str:
    image = tmp_path / "qr.png"
    locator.screenshot(path=str(image))
    done = subprocess.run(["zbarimg", "--quiet", "--raw", "-Sbinary", str(image)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().rstrip("\n")


@pytest.mark.skipif(not shutil.which("zbarimg"), reason="Debian's zbar-tools (make test installs it)")
def test_an_operator_reveals_a_wireguard_user_scans_its_qr_codes_and_downloads_the_conf(
    logged_in_page: Any, tmp_path: Path
) -> None:
    user = _wireguard_user()
    page = logged_in_page
    page.goto(f"/users/{user.pk}/")
    assert page.locator("#delivery svg").count() == 0
    page.click("text=Reveal links and QR codes")
    page.wait_for_selector("#delivery figure svg.qr")
    conf_text = page.locator("#delivery-item-1").inner_text()
    assert f"PublicKey = {SERVER_PUBLIC}" in conf_text and "Address = 10.8.0.2/32" in conf_text
    assert _decode_qr(page.locator("#delivery figure svg.qr").first, tmp_path) == conf_text.rstrip("\n")
    link = page.locator("#delivery-item-2").inner_text()
    assert link.startswith("wireguard://")
    assert _decode_qr(page.locator("#delivery figure svg.qr").nth(1), tmp_path) == link

    with page.expect_download() as download_info:
        page.click("button.download-conf")
    download = download_info.value
    assert download.suggested_filename == "carol.conf"
    saved = tmp_path / "carol.conf"
    download.save_as(str(saved))
    assert saved.read_text() == conf_text.rstrip("\n") + "\n"
    if shutil.which("wg-quick"):
        assert subprocess.run(["wg-quick", "strip", str(saved)], capture_output=True, check=False).returncode == 0


def test_an_operator_issues_a_subscription_url_and_the_users_browser_shows_its_page(
    logged_in_page: Any, browser: Any, live_app: Any, tmp_path: Path
) -> None:
    user = _wireguard_user("dave")
    page = logged_in_page
    page.goto(f"/users/{user.pk}/")
    page.click("text=Reveal links and QR codes")
    page.wait_for_selector("#subscription button")
    page.click("text=Issue a subscription URL")
    page.wait_for_selector("#subscription-url")
    url = page.locator("#subscription-url").inner_text()
    assert url.startswith(f"{live_app.url}/sub/")
    # The copy button runs from static/js under the app's CSP (an inline handler would be blocked).
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#subscription button[data-copy=subscription-url]")
    expect(page.locator("#subscription button[data-copy]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == url

    # Revoking asks first: dismissed, nothing happens; a new URL, accepted, replaces the old one.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#subscription button.danger")
    page.wait_for_timeout(300)
    assert page.locator("#subscription-url").inner_text() == url
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Issue a new URL")
    expect(page.locator("#subscription-url")).not_to_have_text(url)
    old_url, url = url, page.locator("#subscription-url").inner_text()
    visitor = browser.new_context()
    try:
        assert visitor.new_page().goto(old_url).status == 404
    finally:
        visitor.close()

    # The VPN user: no session, a plain browser.
    visitor = browser.new_context()
    try:
        other = visitor.new_page()
        response = other.goto(url)
        assert response.status == 200 and response.headers["referrer-policy"] == "no-referrer"
        assert "dave" in other.locator("h1").inner_text()
        assert other.locator("svg.qr").count() == 3  # the .conf, the wireguard:// link, the subscription URL
        assert _decode_qr(other.locator("svg.qr").last, tmp_path) == url
        with other.expect_download() as download_info:
            other.click("a.download-conf")
        assert download_info.value.suggested_filename == "dave.conf"
    finally:
        visitor.close()


def test_an_operator_ticks_two_users_and_downloads_their_new_subscription_urls_as_csv(
    logged_in_page: Any, tmp_path: Path
) -> None:
    from users.tests.factories import make_users

    make_users(3, prefix="team")
    page = logged_in_page
    page.goto("/users/?q=team")
    page.check("tr[data-user=team0000] .row-select")
    page.check("tr[data-user=team0002] .row-select")
    page.select_option("#subscription-action", "issue_missing")
    with page.expect_navigation():
        page.click("#subscriptions-apply")
    assert "<strong>2</strong>" in page.content()
    with page.expect_download() as download_info:
        page.click("text=Issue and download CSV")
    saved = tmp_path / "urls.csv"
    download_info.value.save_as(str(saved))
    rows = saved.read_text().splitlines()
    assert rows[0] == "id,username,subscription_url"
    assert sorted(row.split(",")[1] for row in rows[1:]) == ["team0000", "team0002"]
    visitor = page.context.browser.new_context()
    try:
        other = visitor.new_page()
        assert other.goto(rows[1].split(",")[2]).status == 200
    finally:
        visitor.close()
