"""What the user page's "Reveal" shows for one user: its links, QR codes and .conf.

Reads the user with its credentials (decrypted by the model's fields) and its server in
one query; called only by the explicit, permission-checked and audited reveal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.safestring import SafeString

from users.delivery.links import share_link
from users.delivery.profiles import Profile, Unavailable, WireGuardProfile, profile_for
from users.delivery.qr import qr_svg
from users.delivery.wireguard import conf_filename, wireguard_conf
from users.models import VpnUser


@dataclass(frozen=True)
class DeliveryItem:
    label: str
    text: str
    qr: SafeString
    filename: str = ""

    def __repr__(self) -> str:
        return f"<DeliveryItem {self.label} (hidden)>"


@dataclass
class Delivery:
    user: VpnUser
    profile: Profile | None = None
    unavailable: Unavailable | None = None
    items: list[DeliveryItem] = field(default_factory=list)


def delivery_items(profile: Profile, *, with_qr: bool = True) -> list[DeliveryItem]:
    """The links and files of one profile, each with its QR code (left out: `with_qr=False`)."""

    def qr(text: str, title: str) -> SafeString:
        return qr_svg(text, title=title) if with_qr else SafeString("")

    link = share_link(profile)
    label = {"vless": "VLESS link", "shadowsocks": "Shadowsocks link (SIP002)", "wireguard": "WireGuard link"}
    items = [DeliveryItem(label[str(profile.protocol.value)], link, qr(link, f"{profile.name}: link"))]
    if isinstance(profile, WireGuardProfile):
        conf = wireguard_conf(profile)
        # The .conf first: it is what the WireGuard apps import (their QR scanner reads this).
        conf_qr = qr(conf, f"{profile.name}: .conf")
        items.insert(0, DeliveryItem("WireGuard file", conf, conf_qr, conf_filename(profile.name)))
    return items


def load_user_with_credentials(pk: int) -> VpnUser | None:
    return VpnUser.objects.select_related("server").filter(pk=pk).first()


def user_delivery(pk: int) -> Delivery | None:
    user = load_user_with_credentials(pk)
    if user is None:
        return None
    profile = profile_for(user)
    if isinstance(profile, Unavailable):
        return Delivery(user=user, unavailable=profile)
    return Delivery(user=user, profile=profile, items=delivery_items(profile))


def user_wireguard_conf(pk: int) -> tuple[str, str] | Unavailable | None:
    """(file name, contents) of a WireGuard user's .conf; what is missing; None if no such user."""
    user = load_user_with_credentials(pk)
    if user is None:
        return None
    profile = profile_for(user)
    if isinstance(profile, Unavailable):
        return profile
    if not isinstance(profile, WireGuardProfile):
        return Unavailable(f"{user.username} is a {user.get_protocol_display()} user: there is no WireGuard file.")
    return conf_filename(profile.name), wireguard_conf(profile)
