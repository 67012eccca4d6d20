"""AEM Assets Author API: read and write an asset's metadata (SPEC §4, PROTOCOLS §3)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings

from pimsync.clients import http, ims


@dataclass
class Metadata:
    values: dict
    etag: str


def _url(asset_id: str) -> str:
    return f"{settings.AEM_AUTHOR_URL}/adobe/assets/{quote(asset_id, safe=':')}/metadata"


def _call(method: str, asset_id: str, *, expected, headers=None, **kwargs):
    """One authenticated call; a 401 renews the token once (it may have been revoked early)."""
    for attempt in (1, 2):
        token = ims.get_token()
        all_headers = {
            "Authorization": f"Bearer {token}",
            "X-Api-Key": settings.ADOBE_CLIENT_ID,
            # Required by the experimental spec; harmless on the stable API (PROTOCOLS §3).
            "X-Adobe-Accept-Experimental": "1",
            **(headers or {}),
        }
        try:
            return http.request(
                method, _url(asset_id), expected=expected, headers=all_headers, error_class="aem", **kwargs
            )
        except http.HttpError as exc:
            if exc.status == 401 and attempt == 1:
                ims.invalidate(token)
                continue
            raise
    raise AssertionError("unreachable")


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
