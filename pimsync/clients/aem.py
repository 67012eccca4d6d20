"""AEM Assets Author API: read and write an asset's metadata
(https://developer.adobe.com/experience-cloud/experience-manager-apis/api/stable/assets/author/)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings

from pimsync.clients import http, ims


@dataclass
class Metadata:
    """An asset's metadata properties and the ETag to make a PATCH conditional on."""

    values: dict
    etag: str


def _url(asset_id: str) -> str:
    return f"{settings.AEM_AUTHOR_URL}/adobe/assets/{quote(asset_id, safe=':')}/metadata"


def _call(method: str, asset_id: str, *, expected, headers=None, **kwargs):
    """One authenticated call; a 401 renews the token once (it may have been revoked early)."""
    token = ims.get_token()
    try:
        return _send(method, asset_id, token, expected=expected, headers=headers, **kwargs)
    except http.HttpError as exc:
        if exc.status != 401:
            raise
    ims.invalidate(token)
    return _send(method, asset_id, ims.get_token(), expected=expected, headers=headers, **kwargs)


def _send(method: str, asset_id: str, token: str, *, expected, headers=None, **kwargs):
    all_headers = {
        "Authorization": f"Bearer {token}",
        "X-Api-Key": settings.ADOBE_CLIENT_ID,
        # The experimental version of the API requires it; the stable one ignores it, and Adobe's
        # newer tutorials still send it.
        "X-Adobe-Accept-Experimental": "1",
        **(headers or {}),
    }
    # Every AEM call honours a 429's pause, whichever worker got it (`pimsync.throttle`).
    return http.request(
        method, _url(asset_id), expected=expected, headers=all_headers, error_class="aem", pause_key="aem", **kwargs
    )


def check_not_paused() -> None:
    """Raise the retryable `aem_paused` error while AEM's pause runs (before work that ends in AEM calls)."""
    http.refuse_while_paused("aem", "AEM calls")


def get_metadata(asset_id: str) -> Metadata:
    """The asset's current metadata and its ETag."""
    response = _call("GET", asset_id, expected=(200,), headers={"Accept": "application/json"})
    body = http.json_object(response, who="AEM's metadata GET", error_class="aem_bad_response", retryable=True)
    values = body.get("assetMetadata")
    return Metadata(values=values if isinstance(values, dict) else {}, etag=response.headers.get("ETag", ""))


def patch_metadata(asset_id: str, operations: list[dict], etag: str):
    """JSON Patch the asset's metadata, conditional on `etag` (412 when someone wrote first)."""
    return _call(
        "PATCH",
        asset_id,
        expected=(200, 204),
        headers={"Content-Type": "application/json-patch+json", "If-Match": etag or "*"},
        data=json.dumps(operations),
    )
