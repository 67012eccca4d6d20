"""PIM connectors: look a product up by its key (settings `PIM_CONNECTOR`, `PIM_BASE_URL`,
`PIM_PRODUCT_PATH`, `PIM_API_TOKEN`; Akeneo's in `pimsync.pim.akeneo`).

A connector's core is one method, `get_product(key) -> dict | None` (None: the PIM has no such
product), raising `http.HttpError` for anything else. `Connector` gives the rest a default that
says "not supported": the attribute list, the products changed since a cursor, the write-back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.utils.module_loading import import_string

from pimsync.models import DemoProduct
from pimsync.outbound import http

DEMO_CATALOG = Path(__file__).resolve().parent.parent / "demo" / "catalog.json"


class ConfigurationError(Exception):
    """`PIM_CONNECTOR` names no connector of this version; asking again will not help (the system
    checks report the same setting at start-up)."""


class Connector:
    """What the pipeline, the mapping editor and the PIM poll ask of a PIM."""

    name = ""
    # How messages name the PIM: "product 'K' is not in the PIM".
    label = "the PIM"
    # Whether `write_text` can store the asset links in a product (pimsync.pim.writeback).
    writes_back = False
    # Whether `changed_since` can list changed products (the scheduled poll, `poll_pim`).
    polls = False

    def get_product(self, key: str) -> dict | None:
        raise NotImplementedError

    def get_product_by_uuid(self, uuid: str) -> dict | None:
        """The product with the PIM's own id (Akeneo's uuid); a PIM that names products by key alone
        cannot say (a notification naming a product by uuid only is then one it cannot act on)."""
        raise ConfigurationError(
            f"{self.label} names products by key only, and this notification names one by uuid only "
            "(is PIM_CONNECTOR right?)"
        )

    def attributes(self) -> list[dict] | None:
        """The PIM's attribute definitions for the rule form, or None when this PIM has no such list."""
        return None

    def fingerprint_view(self, product: dict) -> dict:
        """The part of a product whose change is a change of the PIM data (Asset.pim_fingerprint)."""
        return product

    def product_uuid(self, product: dict) -> str:
        """The PIM's own id of the product when it names products by one besides their key (Akeneo's
        uuid), kept on the assets so a notification naming only that id is resolved without a call."""
        return ""

    def changed_since(self, cursor: dict) -> Iterator[ChangedPage]:
        """Pages of products changed since `cursor` (a PIM without such a search yields nothing)."""
        return iter(())

    def refusal(self, error: http.HttpError) -> str:
        """What the PIM said when it refused a call, as one line for a reason ("": nothing readable)."""
        return ""


@dataclass
class ChangedPage:
    """One page of changed products: their keys, the cursor to save once they were handed on, and
    the products as read (by key) when the search answered them whole."""

    keys: list[str]
    cursor: dict
    products: dict[str, dict] = field(default_factory=dict)


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


class RestConnector(Connector):
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


class DemoConnector(Connector):
    """The catalog shipped in `pimsync/demo/catalog.json`, for the sandbox; a product changed with
    `simulate_pim_change` is read from its `DemoProduct` row instead, in every process."""

    name = "demo"

    def get_product(self, key: str) -> dict | None:
        changed = DemoProduct.objects.filter(pk=key).values_list("data", flat=True).first()
        return changed if changed is not None else demo_catalog().get(key)


@cache
def demo_catalog() -> dict[str, dict]:
    """The demo products by SKUID, read once per process."""
    return {product["SKUID"]: product for product in json.loads(DEMO_CATALOG.read_text())}


# Every connector of this version by its PIM_CONNECTOR name. Dotted paths, read when asked for:
# a connector module builds on this one, so this one must not import it.
CONNECTORS = {
    "rest": "pimsync.pim.connectors.RestConnector",
    "demo": "pimsync.pim.connectors.DemoConnector",
    "akeneo": "pimsync.pim.akeneo.AkeneoConnector",
}


def connector() -> Connector:
    """The connector `PIM_CONNECTOR` names."""
    path = CONNECTORS.get(settings.PIM_CONNECTOR)
    if path is None:
        raise ConfigurationError(f"PIM_CONNECTOR={settings.PIM_CONNECTOR!r} is not available in this version")
    return import_string(path)()
