"""Webhook secrets and signatures.

A secret must stay usable to sign, so it cannot be hashed like an API secret: it is stored encrypted, with
AES-256-GCM under a key derived (HKDF-SHA256) from API_KEY_PEPPER, as nonce + ciphertext. The database alone
reveals no secret; changing the pepper makes every stored secret unreadable (deliveries then fail, saying so).

Each delivery is signed: HMAC-SHA256 with the secret over `timestamp + "." + body`, sent as
`X-LabelStore-Signature: sha256=<hex>` beside `X-LabelStore-Timestamp` (Unix seconds) and `X-LabelStore-Event-Id`.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_PREFIX = "whsec_"
_INFO = b"label-store webhook secret v1"
_NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """The stored secret does not decrypt under this pepper (API_KEY_PEPPER changed)."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _key(pepper: str) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(pepper.encode()))


def encrypt(secret: str, pepper: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + _key(pepper).encrypt(nonce, secret.encode(), _INFO)


def decrypt(stored: bytes, pepper: str) -> str:
    try:
        return _key(pepper).decrypt(stored[:_NONCE_BYTES], stored[_NONCE_BYTES:], _INFO).decode()
    except (InvalidTag, ValueError):
        raise SecretUnreadable("the webhook's secret cannot be decrypted: API_KEY_PEPPER changed since it was "
                               "registered; register the webhook again") from None


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def headers(secret: str, event_id: str, event_type: str, timestamp: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-LabelStore-Event-Id": event_id,
            "X-LabelStore-Event-Type": event_type, "X-LabelStore-Timestamp": timestamp,
            "X-LabelStore-Signature": signature(secret, timestamp, body)}
