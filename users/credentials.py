"""Credentials generated per protocol. They leave this module only into the database, encrypted.

`generate_credentials` makes them; `sealed_credentials` is what a COPY or a temporary
table receives: the secrets as Fernet tokens (vpnadmin.crypto) and the UUID's blind
index, so no plaintext secret ever reaches PostgreSQL, whichever way a row is written.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import NamedTuple

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from users.models import Protocol
from vpnadmin.crypto import ENCRYPTED_COLUMNS, blind_index, blind_index_candidates, encrypt

# The blind index keeps UUIDs unique and findable without decrypting a row (rotatekeys
# recomputes it under the same purpose).
UUID_INDEX_PURPOSE = next(c.purpose for c in ENCRYPTED_COLUMNS if c.index == "credential_uuid_index")
# The columns `sealed_credentials` fills, in its order (services' COPY column lists).
CREDENTIAL_COLUMNS = (
    "credential_uuid",
    "credential_password",
    "wg_private_key",
    "wg_public_key",
    "credential_uuid_index",
)


class Credentials(NamedTuple):
    credential_uuid: uuid.UUID | None
    credential_password: str
    wg_private_key: str
    wg_public_key: str

    def __repr__(self) -> str:
        return "<Credentials (hidden)>"


class SealedCredentials(NamedTuple):
    """Column values as stored: tokens for the secrets, the public key as is (it is public)."""

    credential_uuid: str | None
    credential_password: str
    wg_private_key: str
    wg_public_key: str
    credential_uuid_index: str | None

    def __repr__(self) -> str:
        return "<SealedCredentials>"


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


def seal(credentials: Credentials) -> SealedCredentials:
    """Encrypt what is secret; empty values stay empty (the protocol says which kind is filled)."""
    plain_uuid = str(credentials.credential_uuid) if credentials.credential_uuid else None
    return SealedCredentials(
        encrypt(plain_uuid) if plain_uuid else None,
        encrypt(credentials.credential_password) if credentials.credential_password else "",
        encrypt(credentials.wg_private_key) if credentials.wg_private_key else "",
        credentials.wg_public_key,
        uuid_index(plain_uuid) if plain_uuid else None,
    )


def sealed_credentials(protocol: str) -> SealedCredentials:
    """New credentials for `protocol`, ready for a COPY row: nothing in them is plaintext secret."""
    return seal(generate_credentials(protocol))


def uuid_index(value: uuid.UUID | str) -> str:
    return blind_index(UUID_INDEX_PURPOSE, str(uuid.UUID(str(value))))


def uuid_index_candidates(value: uuid.UUID | str) -> list[str]:
    """What `credential_uuid_index__in=` matches for this UUID under any key of the set (mid-rotation)."""
    return blind_index_candidates(UUID_INDEX_PURPOSE, str(uuid.UUID(str(value))))
