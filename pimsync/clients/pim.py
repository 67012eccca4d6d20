"""PIM connectors: look a product up by its key (settings `PIM_CONNECTOR`, `PIM_BASE_URL`,
`PIM_PRODUCT_PATH`, `PIM_API_TOKEN`).

A connector is one method, `get_product(key) -> dict | None` (None: the PIM has no such product),
raising `http.HttpError` for anything else, so an Akeneo connector can follow without touching
the pipeline.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from django.conf import settings

from pimsync.clients import http

DEMO_CATALOG = Path(__file__).resolve().parent.parent / "demo" / "catalog.json"


class ConfigurationError(Exception):
    """`PIM_CONNECTOR` names no connector of this version; asking again will not help (the system
    checks report the same setting at start-up)."""


class Connector(Protocol):
    name: str

    def get_product(self, key: str) -> dict | None: ...


def key_segment(key: str) -> str:
    """`key` as exactly one path segment: every reserved character quoted, `.`, `..` and "" refused.

    `/`, `?` and `#` are quoted so the key stays inside its segment, and `.`/`..` would be
    resolved away by the HTTP client (RFC 3986 dot segments), sending the PIM token to the
    parent path; a key that is empty or one of those names no product.
    """
    if key in (".", "..") or not key.strip():
        raise http.HttpError(
            f"{key!r} cannot be a product key: it must be one path segment, not empty, '.' or '..'",
            retryable=False,
            error_class="mapping",
        )
    return quote(key, safe="")


class RestConnector:
    """Any PIM that answers `GET {PIM_BASE_URL}{PIM_PRODUCT_PATH}` with the product as JSON."""

    name = "rest"

    def get_product(self, key: str) -> dict | None:
        path = settings.PIM_PRODUCT_PATH.replace("{key}", key_segment(key))
        headers = {"Accept": "application/json"}
        if settings.PIM_API_TOKEN:
            headers["Authorization"] = f"Bearer {settings.PIM_API_TOKEN}"
        try:
            response = http.request(
                "GET", settings.PIM_BASE_URL + path, headers=headers, error_class="pim", pause_key="pim"
            )
        except http.HttpError as exc:
            if exc.status == 404:
                return None
            raise
        # A malformed answer will not fix itself by asking again: the event fails and says so.
        return http.json_object(response, who="the PIM", error_class="pim_bad_response", retryable=False)


class DemoConnector:
    """The catalog shipped in `pimsync/demo/catalog.json`, for the sandbox."""

    name = "demo"

    def get_product(self, key: str) -> dict | None:
        return demo_catalog().get(key)


@cache
def demo_catalog() -> dict[str, dict]:
    """The demo products by SKUID, read once per process."""
    return {product["SKUID"]: product for product in json.loads(DEMO_CATALOG.read_text())}


def connector() -> Connector:
    """The connector `PIM_CONNECTOR` names."""
    if settings.PIM_CONNECTOR == "rest":
        return RestConnector()
    if settings.PIM_CONNECTOR == "demo":
        return DemoConnector()
    raise ConfigurationError(f"PIM_CONNECTOR={settings.PIM_CONNECTOR!r} is not available in this version")
