"""Adobe IMS OAuth Server-to-Server tokens (https://developer.adobe.com/developer-console/docs/guides/authentication/ServerToServerAuthentication/ims/).

One token serves every worker process (`tokens.SharedToken`: an encrypted `AccessToken` row named
"ims", one refresh at a time across processes), because Adobe throttles token minting.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography.fernet import Fernet
from django.conf import settings

from pimsync.outbound import http
from pimsync.outbound.tokens import SharedToken

TOKEN_NAME = "ims"
# Renew this long before IMS says the token expires (tokens last about 24 hours; Adobe asks
# clients to cache and reuse them rather than mint new ones).
EXPIRY_MARGIN = timedelta(minutes=5)


def _fetch(previous: dict | None) -> tuple[dict, int]:
    """A new token from IMS (the client-credentials grant has nothing to carry over)."""
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
        body = http.json_object(response, who="IMS", error_class="ims", retryable=True)
        return {"access_token": str(body["access_token"])}, int(body.get("expires_in", 3600))
    except http.HttpError as exc:
        if exc.status and 400 <= exc.status < 500 and not exc.retryable:
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
        raise http.HttpError("IMS answered without an access_token", retryable=True, error_class="ims") from None


_token = SharedToken(TOKEN_NAME, _fetch, margin=EXPIRY_MARGIN)


def get_token() -> str:
    """A valid access token, from memory, the shared row, or IMS (once for all processes)."""
    return _token.get()


def new_token() -> str:
    """A token asked of IMS now, kept by no one (`manage.py doctor` proves the credentials work
    today, which a token cached yesterday does not)."""
    return _fetch(None)[0]["access_token"]


def invalidate(token: str) -> None:
    """Forget `token` after a 401, so the next `get_token()` asks IMS once more."""
    _token.invalidate(token)


def forget() -> None:
    """Drop the process-local copy (tests, or after rotating credentials)."""
    _token.forget()


def _fernet() -> Fernet:
    return _token.fernet()
