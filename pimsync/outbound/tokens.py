"""Access tokens shared by every worker process: one encrypted `AccessToken` row per system.

A token lives in its row, encrypted with a key derived from SECRET_KEY, until shortly before it
expires. When it must be renewed, one process claims the refresh with a conditional UPDATE and
the others wait for its result, so a fleet of workers starting at once asks the token endpoint
once, not once each (Adobe throttles token minting; Akeneo counts token calls against the API).

What a system needs besides the access token (Akeneo's refresh token) is stored in the same
encrypted blob, and handed to the system's `fetch` at the next renewal even after the access
token expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from pimsync.models import AccessToken

# How long one process may hold the refresh claim before another may try.
REFRESH_CLAIM = timedelta(seconds=30)

# fetch(previous secrets or None) -> (secrets with at least "access_token", lifetime in seconds)
Fetch = Callable[[dict | None], tuple[dict, int]]


class SharedToken:
    """The token of one system (`name` is its AccessToken row), renewed `margin` before expiry."""

    def __init__(self, name: str, fetch: Fetch, *, margin: timedelta) -> None:
        self.name = name
        self.fetch = fetch
        self.margin = margin
        self._memory: tuple[str, float] | None = None  # this process's copy: token, renew-at (epoch)
        self._lock = threading.Lock()

    def fernet(self) -> Fernet:
        digest = hashlib.sha256(f"pimsync-{self.name}-token:{settings.SECRET_KEY}".encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))

    def get(self) -> str:
        """A valid access token, from memory, the shared row, or the system (once for all processes)."""
        token = self._remembered()
        if token:
            return token
        with self._lock:
            # Threads that waited here while another read or renewed the token find it in memory:
            # a worker's threads starting at once read the row once, not once each.
            token = self._remembered()
            if token:
                return token
            deadline = time.monotonic() + REFRESH_CLAIM.total_seconds()
            while True:
                token = self._stored()
                if token:
                    return token
                if self._claim():
                    # Another process may have stored its token (and freed the claim) between our
                    # read and our claim: look once more before asking for a second token.
                    token = self._stored()
                    if token:
                        self._rows().update(refreshing_until=None)
                        return token
                    return self._renew()
                if time.monotonic() > deadline:
                    return self._renew()  # the claimant seems gone; better one extra token than none
                time.sleep(0.1)

    def _remembered(self) -> str | None:
        """This process's copy of the token, while it is not due for renewal."""
        cached = self._memory
        return cached[0] if cached and cached[1] > time.time() else None

    def invalidate(self, token: str) -> None:
        """Forget `token` after a 401, so the next `get()` renews it (once for all processes)."""
        with self._lock:
            if self._memory and self._memory[0] == token:
                self._memory = None
            row = self._rows().first()
            if row is not None and (self._decrypt(row) or {}).get("access_token", token) == token:
                self._rows().update(expires_at=timezone.now())

    def forget(self) -> None:
        """Drop the process-local copy (tests, or after rotating credentials)."""
        self._memory = None

    def _rows(self):
        return AccessToken.objects.filter(name=self.name)

    def _decrypt(self, row: AccessToken) -> dict | None:
        try:
            text = self.fernet().decrypt(bytes(row.encrypted)).decode()
        except InvalidToken:  # SECRET_KEY changed since it was stored, or nothing stored yet
            return None
        try:
            secrets = json.loads(text)
        except ValueError:
            secrets = None
        # Rows written before the blob held more than the token hold the bare token.
        return secrets if isinstance(secrets, dict) else {"access_token": text}

    def _margin(self, lifetime: object) -> timedelta:
        """`margin`, but at most a quarter of the token's lifetime: a token that lives two minutes
        is used for 90 seconds, not renewed before every call."""
        if isinstance(lifetime, (int, float)) and lifetime > 0:
            return min(self.margin, timedelta(seconds=lifetime / 4))
        return self.margin

    def _remember(self, token: str, expires_at, margin: timedelta) -> str:
        self._memory = (token, (expires_at - margin).timestamp())
        return token

    def _stored(self) -> str | None:
        now = timezone.now()
        row = self._rows().filter(expires_at__gt=now).first()
        secrets = self._decrypt(row) if row is not None else None
        if not secrets or not secrets.get("access_token"):
            return None
        margin = self._margin(secrets.get("lifetime"))
        if row.expires_at - margin <= now:
            return None
        return self._remember(secrets["access_token"], row.expires_at, margin)

    def _claim(self) -> bool:
        now = timezone.now()
        AccessToken.objects.get_or_create(
            name=self.name, defaults={"encrypted": b"", "expires_at": now - timedelta(seconds=1)}
        )
        free = Q(refreshing_until__isnull=True) | Q(refreshing_until__lt=now)
        return bool(self._rows().filter(free).update(refreshing_until=now + REFRESH_CLAIM))

    def _renew(self) -> str:
        row = self._rows().first()
        previous = self._decrypt(row) if row is not None else None
        try:
            secrets, expires_in = self.fetch(previous)
        except BaseException:
            self._rows().update(refreshing_until=None)
            raise
        expires_at = timezone.now() + timedelta(seconds=expires_in)
        # The lifetime is stored with the token: every process renews it the same time before expiry.
        blob = json.dumps({**secrets, "lifetime": expires_in}, separators=(",", ":")).encode()
        AccessToken.objects.update_or_create(
            name=self.name,
            defaults={"encrypted": self.fernet().encrypt(blob), "expires_at": expires_at, "refreshing_until": None},
        )
        return self._remember(secrets["access_token"], expires_at, self._margin(expires_in))
