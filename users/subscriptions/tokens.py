"""Subscription tokens: generation, the stored hash, and the cache's sealing key.

A token is 24 random bytes in URL-safe base64 (32 characters, 192 bits). The database
keeps `token_hash(token)`; the response cache keys on the same hash and seals what it
stores with a key derived from the token itself, so neither a database dump nor a Redis
dump holds a working URL or the credentials the URL serves.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_BYTES = 24
TOKEN_LENGTH = 32
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32}")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(b"vpnadmin-subscription:" + token.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_token(token: str) -> bool:
    return TOKEN_RE.fullmatch(token) is not None


def _sealing_key(token: str) -> bytes:
    # A different derivation from token_hash: knowing the stored hash does not open the seal.
    return hashlib.sha256(b"vpnadmin-subscription-cache:" + token.encode()).digest()


def seal(token: str, data: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_sealing_key(token)).encrypt(nonce, data, None)


def unseal(token: str, sealed: bytes) -> bytes | None:
    """The data, or None when it was sealed under another token (or altered)."""
    if len(sealed) < 28:
        return None
    try:
        return AESGCM(_sealing_key(token)).decrypt(sealed[:12], sealed[12:], None)
    except InvalidTag:
        return None
