"""What a key pair is made of: a public key id, a random secret, and the keyed hash the database keeps.

Secrets are high-entropy random strings, so a keyed fast hash (HMAC-SHA256 with a server-side pepper)
compared in constant time is enough: no bcrypt, no per-request cost worth measuring. Only a key imported from
LabelAPI arrives with a bcrypt hash, checked once (`legacy_matches`) before our HMAC replaces it.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

import bcrypt

DUMMY_HASH = b"\0" * 32  # compared against when the key does not exist: the same work either way


def new_key_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "lsk_" + "".join(secrets.choice(alphabet) for _ in range(20))


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def hash_secret(secret: str, pepper: str) -> bytes:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).digest()


def legacy_matches(secret: str, legacy_hash: bytes) -> bool:
    """A secret against LabelAPI's bcrypt hash of it (bcrypt read only the first 72 bytes)."""
    try:
        return bcrypt.checkpw(secret.encode()[:72], legacy_hash)
    except ValueError:  # not a bcrypt hash
        return False


def hmac_matches(offered: bytes, current: bytes | None, previous: bytes | None,
                 previous_valid_until: datetime | None, now: datetime) -> bool:
    """The offered hash against the current one, or the previous one while a rotation's grace lasts."""
    if hmac.compare_digest(offered, current or DUMMY_HASH):
        return True
    return bool(previous and previous_valid_until and now < previous_valid_until
                and hmac.compare_digest(offered, previous))
