"""Credentials generated per protocol. They leave this module only into the database."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from users.models import Protocol


class Credentials(NamedTuple):
    credential_uuid: uuid.UUID | None
    credential_password: str
    wg_private_key: str
    wg_public_key: str

    def __repr__(self) -> str:
        return "<Credentials (hidden)>"


def generate_credentials(protocol: str) -> Credentials:
    """VLESS: a random UUID; Shadowsocks: a 24-byte random password; WireGuard: an X25519 key pair."""
    if protocol == Protocol.VLESS:
        return Credentials(uuid.uuid4(), "", "", "")
    if protocol == Protocol.SHADOWSOCKS:
        return Credentials(None, secrets.token_urlsafe(24), "", "")
    if protocol == Protocol.WIREGUARD:
        key = X25519PrivateKey.generate()
        private = base64.b64encode(key.private_bytes_raw()).decode()
        public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
        return Credentials(None, "", private, public)
    raise ValueError(f"unknown protocol {protocol!r}")
