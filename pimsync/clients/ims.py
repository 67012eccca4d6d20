"""Adobe IMS OAuth Server-to-Server tokens (https://developer.adobe.com/developer-console/docs/guides/authentication/ServerToServerAuthentication/ims/).

One token serves every worker process: it lives in the `AccessToken` row, encrypted with a key
derived from SECRET_KEY, until shortly before it expires. When it must be renewed, one process
claims the refresh with a conditional UPDATE and the others wait for its result, so a fleet of
workers starting at once asks IMS for one token, not one each (Adobe throttles token minting).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from pimsync.clients import http
from pimsync.models import AccessToken

TOKEN_NAME = "ims"
# Renew this long before IMS says the token expires (tokens last about 24 hours; Adobe asks
# clients to cache and reuse them rather than mint new ones).
EXPIRY_MARGIN = timedelta(minutes=5)
# How long one process may hold the refresh claim before another may try.
REFRESH_CLAIM = timedelta(seconds=30)

_memory: dict[str, tuple[str, float]] = {}  # process-local copy: token, expiry as epoch seconds
_lock = threading.Lock()


def _fernet() -> Fernet:
    digest = hashlib.sha256(("pimsync-ims-token:" + settings.SECRET_KEY).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _remember(token: str, expires_at) -> str:
    _memory[TOKEN_NAME] = (token, (expires_at - EXPIRY_MARGIN).timestamp())
    return token


def _stored() -> str | None:
    row = AccessToken.objects.filter(name=TOKEN_NAME, expires_at__gt=timezone.now() + EXPIRY_MARGIN).first()
    if row is None:
        return None
    try:
        return _remember(_fernet().decrypt(bytes(row.encrypted)).decode(), row.expires_at)
    except InvalidToken:  # SECRET_KEY changed since it was stored
        return None


def get_token() -> str:
    """A valid access token, from memory, the shared row, or IMS (once for all processes)."""
    cached = _memory.get(TOKEN_NAME)
    if cached and cached[1] > time.time():
        return cached[0]
    with _lock:
        deadline = time.monotonic() + REFRESH_CLAIM.total_seconds()
        while True:
            token = _stored()
            if token:
                return token
            if _claim_refresh():
                # Another process may have stored its token (and freed the claim) between our
                # read and our claim: look once more before asking IMS for a second token.
                token = _stored()
                if token:
                    AccessToken.objects.filter(name=TOKEN_NAME).update(refreshing_until=None)
                    return token
                return _refresh()
            if time.monotonic() > deadline:
                return _refresh()  # the claimant seems gone; better one extra token than none
            time.sleep(0.1)


def _claim_refresh() -> bool:
    now = timezone.now()
    AccessToken.objects.get_or_create(
        name=TOKEN_NAME, defaults={"encrypted": b"", "expires_at": now - timedelta(seconds=1)}
    )
    free = Q(refreshing_until__isnull=True) | Q(refreshing_until__lt=now)
    return bool(AccessToken.objects.filter(free, name=TOKEN_NAME).update(refreshing_until=now + REFRESH_CLAIM))


def _refresh() -> str:
    try:
        response = http.request(
            "POST",
            settings.ADOBE_IMS_TOKEN_URL,
            # In the body, not the query string, so the secret stays out of access logs (IMS accepts
            # both and recommends the body).
            data={
                "grant_type": "client_credentials",
                "client_id": settings.ADOBE_CLIENT_ID,
                "client_secret": settings.ADOBE_CLIENT_SECRET,
                "scope": settings.ADOBE_SCOPES,
            },
            error_class="ims",
        )
        body = response.json()
        token, expires_in = body["access_token"], int(body.get("expires_in", 3600))
    except http.HttpError as exc:
        AccessToken.objects.filter(name=TOKEN_NAME).update(refreshing_until=None)
        if exc.status and not exc.retryable:
            # 4xx from IMS is a configuration problem (invalid_client, invalid_scope); the body names it.
            raise http.HttpError(
                f"IMS refused the client credentials ({exc.status}): {exc.body[:300]}",
                retryable=False,
                status=exc.status,
                body=exc.body,
                error_class="ims_credentials",
            ) from None
        raise
    except (ValueError, KeyError, TypeError):
        AccessToken.objects.filter(name=TOKEN_NAME).update(refreshing_until=None)
        raise http.HttpError("IMS answered without an access_token", retryable=True, error_class="ims") from None
    expires_at = timezone.now() + timedelta(seconds=expires_in)
    AccessToken.objects.update_or_create(
        name=TOKEN_NAME,
        defaults={"encrypted": _fernet().encrypt(token.encode()), "expires_at": expires_at, "refreshing_until": None},
    )
    return _remember(token, expires_at)


def invalidate(token: str) -> None:
    """Forget `token` after a 401, so the next `get_token()` asks IMS once more."""
    with _lock:
        if _memory.get(TOKEN_NAME, ("",))[0] == token:
            _memory.pop(TOKEN_NAME, None)
        row = AccessToken.objects.filter(name=TOKEN_NAME).first()
        if row is not None:
            try:
                stored = _fernet().decrypt(bytes(row.encrypted)).decode()
            except InvalidToken:
                stored = token
            if stored == token:
                AccessToken.objects.filter(name=TOKEN_NAME).update(expires_at=timezone.now())


def forget() -> None:
    """Drop the process-local copy (tests, or after rotating credentials)."""
    _memory.clear()
