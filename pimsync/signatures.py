"""Adobe I/O Events digital signatures (PROTOCOLS §1.2).

Each delivery carries two RSA-SHA256 (PKCS#1 v1.5) signatures of the raw body and the relative
paths of the two public keys under `ADOBE_EVENTS_KEY_BASE_URL`; the body is authentic when either
signature verifies. Keys are cached per process for at most 24 hours.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

from pimsync.clients import http

KEY_MAX_AGE_SECONDS = 24 * 3600  # Adobe: cache keys for no more than 24 h
# A key fetched this recently is not fetched again when a signature fails: a fresh key that does
# not verify means a forged body, not a rotation, and forged bodies must not drive key fetches.
REFETCH_COOLDOWN_SECONDS = 60
# Relative paths only, like `/prod/keys/pub-key-abc.pem`: no scheme, no host, no `..`.
KEY_PATH = re.compile(r"^/(?!/)(?:[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*/?)+$")

HEADER_PAIRS = (
    ("x-adobe-digital-signature-1", "x-adobe-public-key1-path"),
    ("x-adobe-digital-signature-2", "x-adobe-public-key2-path"),
)


class SignatureError(Exception):
    """The body is not proven to come from Adobe (answered 401)."""


class KeyUnavailable(Exception):
    """No key could be fetched right now (answered 503, so Adobe delivers again)."""


@dataclass
class _CachedKey:
    key: rsa.RSAPublicKey
    fetched_at: float


class KeyStore:
    """Public keys by path, fetched through the allow-listed HTTP client."""

    def __init__(self) -> None:
        self._keys: dict[str, _CachedKey] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()

    def get(self, path: str, *, refresh: bool = False) -> rsa.RSAPublicKey | None:
        """The key at `path`; None when the key server says there is no such key."""
        now = time.time()
        cached = self._keys.get(path)
        if cached and not refresh and now - cached.fetched_at < KEY_MAX_AGE_SECONDS:
            return cached.key
        key = self._fetch(path)
        if key is not None:
            with self._lock:
                self._keys[path] = _CachedKey(key, now)
        return key

    def age(self, path: str) -> float | None:
        cached = self._keys.get(path)
        return None if cached is None else time.time() - cached.fetched_at

    def _fetch(self, path: str) -> rsa.RSAPublicKey | None:
        self.fetches += 1
        url = settings.ADOBE_EVENTS_KEY_BASE_URL + path
        try:
            response = http.request("GET", url, error_class="key_server", timeout=5)
        except http.HttpError as exc:
            if exc.status is not None and not exc.retryable:
                return None  # 403/404: no such key, the signature cannot be Adobe's
            raise KeyUnavailable(f"public key server unavailable: {exc.message}") from None
        try:
            key = serialization.load_pem_public_key(response.content)
        except ValueError:
            return None
        return key if isinstance(key, rsa.RSAPublicKey) else None


keys = KeyStore()


def _verifies(key: rsa.RSAPublicKey | None, signature: bytes, body: bytes) -> bool:
    if key is None:
        return False
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def verify(body: bytes, headers: Mapping[str, str]) -> None:
    """Raise SignatureError unless either signature in `headers` verifies `body`."""
    pairs = []
    for signature_header, path_header in HEADER_PAIRS:
        signature, path = headers.get(signature_header, ""), headers.get(path_header, "")
        if not signature or not path:
            continue
        if not KEY_PATH.match(path) or ".." in path:
            raise SignatureError(f"{path_header} must be a relative key path such as /prod/keys/pub-key.pem")
        pairs.append((_decode(signature), path))
    if not pairs:
        raise SignatureError(
            "missing signature: x-adobe-digital-signature-1/-2 with x-adobe-public-key1/2-path are required"
        )
    pairs = [(signature, path) for signature, path in pairs if signature]
    unavailable: KeyUnavailable | None = None
    for refresh in (False, True):
        for signature, path in pairs:
            if refresh:
                # Re-fetch once, for a key rotated under the same path; skip keys that were
                # never cached or are fresh (see REFETCH_COOLDOWN_SECONDS).
                age = keys.age(path)
                if age is None or age < REFETCH_COOLDOWN_SECONDS:
                    continue
            try:
                if _verifies(keys.get(path, refresh=refresh), signature, body):
                    return
            except KeyUnavailable as exc:
                unavailable = exc
    if unavailable:
        raise unavailable
    raise SignatureError("invalid signature: neither digital signature matches the body")
