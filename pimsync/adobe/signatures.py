"""Adobe I/O Events digital signatures (see docs/adobe-events.md).

Each delivery carries two RSA-SHA256 (PKCS#1 v1.5) signatures of the raw body and the relative
paths of the two public keys under `ADOBE_EVENTS_KEY_BASE_URL`; the body is authentic when either
signature verifies. Keys are cached per process for at most 24 hours.

Everything in the headers is untrusted until a signature verifies, so a forged request must cost
little: key paths are checked with plain string operations (linear time), only paths shaped like
Adobe's (`ADOBE_EVENTS_KEY_PATH_PREFIX` + `pub-key-<id>.pem`) are fetched, a path the key server
does not know is remembered, and keys not seen before are fetched at most
`UNKNOWN_KEY_FETCHES_PER_MINUTE` times a minute per process.
"""

from __future__ import annotations

import base64
import binascii
import logging
import string
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings

from pimsync.outbound import http

log = logging.getLogger(__name__)

KEY_MAX_AGE_SECONDS = 24 * 3600  # Adobe: cache keys for no more than 24 h
# A key fetched this recently is not fetched again when a signature fails: a fresh key that does
# not verify means a forged body, not a rotation, and forged bodies must not drive key fetches.
REFETCH_COOLDOWN_SECONDS = 60
# A path the key server answered "no such key" (or not an RSA key) for is not asked for again for
# this long: repeating a forged path costs nothing.
MISSING_KEY_SECONDS = 600
# A real rotation brings two new paths; anything beyond this a minute is forged deliveries, and
# is answered 503 (Adobe delivers again later) instead of being passed on to Adobe's key server.
UNKNOWN_KEY_FETCHES_PER_MINUTE = 10
# Adobe's key host is a CDN that answers in well under a second. A short timeout keeps what a
# forged request can hold a web thread for small (at most one key fetch that times out).
KEY_FETCH_TIMEOUT_SECONDS = 3
# The file name under the prefix: Adobe's look like `pub-key-voy5XEbWmT.pem`.
KEY_FILE_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
KEY_FILE_MAX_CHARS = 128

HEADER_PAIRS = (
    ("x-adobe-digital-signature-1", "x-adobe-public-key1-path"),
    ("x-adobe-digital-signature-2", "x-adobe-public-key2-path"),
)


class SignatureError(Exception):
    """The body is not proven to come from Adobe (answered 401)."""


class KeyUnavailable(Exception):
    """No key could be fetched right now (answered 503, so Adobe delivers again)."""


class KeyFetchRefused(KeyUnavailable):
    """Too many keys not seen before were asked for in the last minute (answered 503)."""


def is_key_path(path: str) -> bool:
    """Whether `path` has the shape of a key on Adobe's key server: prefix + one `<name>.pem` file."""
    prefix = settings.ADOBE_EVENTS_KEY_PATH_PREFIX
    if not path.startswith(prefix) or not path.endswith(".pem"):
        return False
    name = path[len(prefix) : -len(".pem")]
    return 0 < len(name) <= KEY_FILE_MAX_CHARS and all(char in KEY_FILE_CHARS for char in name)


class _Flight:
    """One fetch of a path in progress; requests wanting the same path wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.key: rsa.RSAPublicKey | None = None
        self.error: str | None = None


@dataclass
class _CachedKey:
    key: rsa.RSAPublicKey
    fetched_at: float  # when the key server last gave us this key
    tried_at: float  # when we last asked for it (also when that failed)


class KeyStore:
    """Public keys by path, fetched through the allow-listed HTTP client; failures are remembered."""

    def __init__(self) -> None:
        self._keys: dict[str, _CachedKey] = {}
        self._missing: dict[str, float] = {}  # path -> until when it counts as "no such key"
        self._unknown_fetches: deque[float] = deque()  # times of fetches of paths not seen before
        self._flights: dict[str, _Flight] = {}
        self._refusal_logged_at = -1e18
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._missing.clear()
            self._unknown_fetches.clear()
            self._flights.clear()
            self._refusal_logged_at = -1e18

    def cached(self, path: str) -> rsa.RSAPublicKey | None:
        """The key at `path` when it is cached and younger than 24 hours; never fetches."""
        entry = self._keys.get(path)
        if entry and time.time() - entry.fetched_at < KEY_MAX_AGE_SECONDS:
            return entry.key
        return None

    def fetch(self, path: str, *, tried: rsa.RSAPublicKey | None = None) -> rsa.RSAPublicKey | None:
        """Ask the key server for `path` unless that was done just now or is known to fail.

        `tried` is the cached key the caller already tried (None if there was none). Returns None when
        there is no other key to verify with (the server has none, or we asked too recently). Raises
        KeyFetchRefused when the per-minute budget for keys not seen before is used up, and
        KeyUnavailable when the key server cannot be reached.
        """
        now = time.time()
        with self._lock:
            decided, flight, leader = self._join_or_lead(path, tried, now)
        if flight is None:
            return decided
        return self._lead(path, flight, now) if leader else self._follow(flight)

    def _join_or_lead(self, path: str, tried, now: float) -> tuple[rsa.RSAPublicKey | None, _Flight | None, bool]:
        """Under the lock: (a key or None to answer with, no flight) or (the flight to lead or follow)."""
        entry = self._keys.get(path)
        if entry is not None and entry.key is not tried and now - entry.fetched_at < KEY_MAX_AGE_SECONDS:
            return entry.key, None, False  # another request fetched it since the caller looked
        flight = self._flights.get(path)
        if flight is not None:
            return None, flight, False
        if entry is not None:
            if now - entry.tried_at < REFETCH_COOLDOWN_SECONDS:
                if now - entry.fetched_at >= KEY_MAX_AGE_SECONDS:
                    # Expired, and the key server failed us moments ago: deliver again later.
                    raise KeyUnavailable("public key server unavailable: the last try failed moments ago")
                return None, None, False  # the cached key already failed: a forged body, not a rotation
            entry.tried_at = now
        else:
            if self._missing.get(path, 0) > now:
                return None, None, False
            self._take_unknown_fetch(now)
        flight = self._flights[path] = _Flight()
        return None, flight, True

    def _follow(self, flight: _Flight) -> rsa.RSAPublicKey | None:
        """Deliveries arriving together after a start or a rotation share one fetch (and one unit
        of the budget). The leader's fetch is bounded by its own timeout."""
        if not flight.done.wait(2 * KEY_FETCH_TIMEOUT_SECONDS + 1):
            raise KeyUnavailable("public key server unavailable: the fetch of this key has not finished")
        if flight.error is not None:
            raise KeyUnavailable(flight.error)
        return flight.key

    def _lead(self, path: str, flight: _Flight, now: float) -> rsa.RSAPublicKey | None:
        """Fetch for everyone waiting on this flight, and record what the key server said."""
        try:
            key = self._fetch(path)
        except KeyUnavailable as exc:
            flight.error = str(exc)
            raise
        except BaseException:
            flight.error = "public key fetch failed"
            raise
        else:
            flight.key = key
            with self._lock:
                self._record(path, key, now)
        finally:
            with self._lock:
                self._flights.pop(path, None)
            flight.done.set()
        return key

    def _record(self, path: str, key: rsa.RSAPublicKey | None, now: float) -> None:
        if key is None:
            # Withdrawn (or never there): forget any key we held for it, and stop asking.
            self._keys.pop(path, None)
            self._prune(self._missing, now)
            self._missing[path] = now + MISSING_KEY_SECONDS
        else:
            self._missing.pop(path, None)
            self._keys[path] = _CachedKey(key, now, now)
            # Keys rotated away long ago would otherwise stay in memory for the process's life.
            for stale in [p for p, e in self._keys.items() if now - e.fetched_at > 2 * KEY_MAX_AGE_SECONDS]:
                del self._keys[stale]

    def _take_unknown_fetch(self, now: float) -> None:
        recent = self._unknown_fetches
        while recent and now - recent[0] >= 60:
            recent.popleft()
        if len(recent) >= UNKNOWN_KEY_FETCHES_PER_MINUTE:
            if now - self._refusal_logged_at >= 60:  # one line a minute, not one per forged request
                self._refusal_logged_at = now
                log.warning(
                    "refusing to fetch more signing keys: %d keys not seen before were asked for within a "
                    "minute (forged deliveries?); such deliveries are answered 503",
                    len(recent),
                )
            raise KeyFetchRefused(
                f"more than {UNKNOWN_KEY_FETCHES_PER_MINUTE} signing keys not seen before were asked for "
                "within a minute"
            )
        recent.append(now)

    @staticmethod
    def _prune(missing: dict[str, float], now: float) -> None:
        for path in [p for p, until in missing.items() if until <= now]:
            del missing[path]

    def _fetch(self, path: str) -> rsa.RSAPublicKey | None:
        url = settings.ADOBE_EVENTS_KEY_BASE_URL + path
        try:
            response = http.request("GET", url, error_class="key_server", timeout=KEY_FETCH_TIMEOUT_SECONDS)
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


def _signature_pairs(headers: Mapping[str, str]) -> list[tuple[bytes | None, str]]:
    pairs = []
    for signature_header, path_header in HEADER_PAIRS:
        signature, path = headers.get(signature_header, ""), headers.get(path_header, "")
        if not signature or not path:
            continue
        if not is_key_path(path):
            example = settings.ADOBE_EVENTS_KEY_PATH_PREFIX + "pub-key-<id>.pem"
            raise SignatureError(f"{path_header} must be a relative key path such as {example}")
        pairs.append((_decode(signature), path))
    if not pairs:
        raise SignatureError(
            "missing signature: x-adobe-digital-signature-1/-2 with x-adobe-public-key1/2-path are required"
        )
    return pairs


def verify(body: bytes, headers: Mapping[str, str]) -> None:
    """Raise SignatureError unless either signature in `headers` verifies `body`."""
    pairs = [(signature, path) for signature, path in _signature_pairs(headers) if signature]
    # Cached keys first: a delivery signed with a key we hold costs no fetch, whatever the other pair says.
    tried = {path: keys.cached(path) for _, path in pairs}
    for signature, path in pairs:
        if _verifies(tried[path], signature, body):
            return
    # Then fetch, each path once: keys not cached yet, and cached keys that may have been rotated
    # under the same path. A refused or failed fetch ends the request at once (503): the other
    # path lives on the same key server, so trying it would only hold this thread longer.
    fetched: dict[str, rsa.RSAPublicKey | None] = {}
    for signature, path in pairs:
        if path not in fetched:
            fetched[path] = keys.fetch(path, tried=tried[path])
        if _verifies(fetched[path], signature, body):
            return
    raise SignatureError("invalid signature: neither digital signature matches the body")
