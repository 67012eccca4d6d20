"""The sandbox's signing key: `simulate_upload` signs with it, the webhook verifies with its
public half, fetched over HTTP from the sandbox's key path like Adobe's."""

from __future__ import annotations

import base64
import os
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

KEY_PATH = "/prod/keys/pub-key-pimsync-sandbox.pem"


def key_file() -> Path:
    return Path(os.environ.get("PIMSYNC_SANDBOX_KEY_FILE") or settings.BASE_DIR / "var" / "sandbox-signing-key.pem")


@cache
def private_key() -> rsa.RSAPrivateKey:
    """Load the sandbox key, creating it (readable by this user only) on first use."""
    path = key_file()
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def public_pem() -> bytes:
    return (
        private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def signed_headers(body: bytes) -> dict[str, str]:
    """The signature headers Adobe would send with `body`, made with the sandbox key."""
    signature = base64.b64encode(private_key().sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    return {
        "x-adobe-digital-signature-1": signature,
        "x-adobe-digital-signature-2": signature,
        "x-adobe-public-key1-path": KEY_PATH,
        "x-adobe-public-key2-path": KEY_PATH,
    }
